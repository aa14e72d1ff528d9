"""ChatYandexGPT beyond LangChain's standard suites: what goes on the wire, replacement-safe streaming,
errors, tools, structured output and the clients' lifecycle, through the sync and the async paths alike."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import LLMResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel
from typing_extensions import TypedDict

from yandexgpt_grpc import AuthenticationError, PermissionDeniedError, StreamInterruptedError, UnavailableError
from yandexgpt_grpc.langchain import ChatYandexGPT
from yandexgpt_grpc.testing import Emulator, Fault, Reply

from .conftest import API_KEY, FOLDER

URI = f"gpt://{FOLDER}/yandexgpt-lite/latest"


class Drive:
    """One face for both paths: invoke/stream in a worker thread (sync) or ainvoke/astream (async)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def invoke(self, runnable: Any, value: Any, **kwargs: Any) -> Any:
        if self.kind == "async":
            return await runnable.ainvoke(value, **kwargs)
        return await asyncio.to_thread(runnable.invoke, value, **kwargs)

    async def stream(self, runnable: Any, value: Any, **kwargs: Any) -> list[Any]:
        if self.kind == "async":
            return [chunk async for chunk in runnable.astream(value, **kwargs)]
        return await asyncio.to_thread(lambda: list(runnable.stream(value, **kwargs)))

    async def batch(self, runnable: Any, values: list[Any]) -> list[Any]:
        if self.kind == "async":
            return list(await runnable.abatch(values))
        return list(await asyncio.to_thread(runnable.batch, values))


@pytest.fixture
def drive(kind: str) -> Drive:
    return Drive(kind)


@pytest.fixture
def make_model(emu: Emulator) -> Any:
    made: list[ChatYandexGPT] = []

    def factory(**overrides: Any) -> ChatYandexGPT:
        params: dict[str, Any] = {
            "model": "yandexgpt-lite",
            "folder_id": FOLDER,
            "endpoint": emu.address,
            "insecure": True,
            "api_key": API_KEY,
            **overrides,
        }
        model = ChatYandexGPT(**params)
        made.append(model)
        return model

    yield factory
    for model in made:
        model.close()


@pytest.fixture
def model(make_model: Any) -> ChatYandexGPT:
    return make_model()


def add_up(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# -- the module stays optional ---------------------------------------------------------------------


def test_importing_the_package_does_not_import_langchain() -> None:
    code = (
        "import sys, yandexgpt_grpc; from yandexgpt_grpc import Client, AsyncClient; "
        "assert not [m for m in sys.modules if m.startswith(('langchain', 'yandexgpt_grpc.langchain'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- invoke -----------------------------------------------------------------------------------------


async def test_invoke(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    msg = await drive.invoke(model, "Hello")
    assert isinstance(msg, AIMessage)
    assert msg.content == 'You said: "Hello". This is the emulator answering.'
    req = emu.calls[0].request
    assert req.model_uri == URI and not req.completion_options.stream
    assert emu.calls[0].header("authorization") == f"Api-Key {API_KEY}"
    usage = msg.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == 1 and usage["output_tokens"] == len(msg.content.split()) + 5
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_token_details"] == {"reasoning": 0}
    meta = msg.response_metadata
    assert meta["model_name"] == "yandexgpt-lite" and meta["finish_reason"] == "FINAL"
    assert meta["model_version"] and meta["model_provider"] == "yandex"


async def test_options_and_reasoning_on_the_wire(drive: Drive, make_model: Any, emu: Emulator) -> None:
    model = make_model(temperature=0.3, max_tokens=50, reasoning_mode="enabled_hidden")
    msg = await drive.invoke(model, "Why?", model="yandexgpt/rc")
    opts = emu.calls[0].request.completion_options
    assert opts.temperature.value == 0.3 and opts.max_tokens.value == 50 and opts.reasoning_options.mode == 2
    assert emu.calls[0].request.model_uri == f"gpt://{FOLDER}/yandexgpt/rc"  # the per-call model override
    assert msg.response_metadata["model_name"] == "yandexgpt/rc"
    usage = msg.usage_metadata
    reasoning = usage["output_token_details"]["reasoning"]
    assert reasoning == 8 + usage["input_tokens"] // 2 and usage["output_tokens"] > reasoning
    await drive.invoke(model, "Why?", temperature=0.9)
    assert emu.calls[1].request.completion_options.temperature.value == 0.9


async def test_batch(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    answers = await drive.batch(model, ["one", "two", "three"])
    assert [a.content.split('"')[1] for a in answers] == ["one", "two", "three"]
    assert len(emu.calls) == 3


async def test_unknown_argument_is_refused(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    with pytest.raises(TypeError, match="unexpected argument 'top_p'"):
        await drive.invoke(model, "hi", top_p=0.5)
    assert emu.calls == []


# -- messages -----------------------------------------------------------------------------------------


async def test_messages_on_the_wire(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    history: list[BaseMessage] = [
        SystemMessage("Be brief"),
        HumanMessage([{"type": "text", "text": "Weather in "}, "Paris and Rome?"]),
        AIMessage(
            "",
            tool_calls=[
                {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"},
                {"name": "get_weather", "args": {"city": "Rome"}, "id": "c2", "type": "tool_call"},
            ],
        ),
        ToolMessage("sunny", tool_call_id="c1"),  # the name comes from the call with this id
        ToolMessage([{"type": "text", "text": "rain"}, "y"], tool_call_id="c2", name="get_weather"),
        ChatMessage(role="user", content="Thanks"),
    ]
    await drive.invoke(model, history)
    msgs = emu.calls[0].request.messages
    assert [(m.role, m.WhichOneof("Content")) for m in msgs] == [
        ("system", "text"),
        ("user", "text"),
        ("assistant", "tool_call_list"),
        ("user", "tool_result_list"),
        ("user", "text"),
    ]
    assert msgs[1].text == "Weather in Paris and Rome?"
    calls = [
        (c.function_call.name, json_format.MessageToDict(c.function_call.arguments))
        for c in msgs[2].tool_call_list.tool_calls
    ]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    results = [(r.function_result.name, r.function_result.content) for r in msgs[3].tool_result_list.tool_results]
    assert results == [("get_weather", "sunny"), ("get_weather", "rainy")]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([HumanMessage([{"type": "image", "url": "https://example.test/cat.png"}])], "text only, got a 'image'"),
        ([ChatMessage(role="critic", content="hm")], "no 'critic' messages"),
        ([HumanMessage("hi"), ToolMessage("x", tool_call_id="nope")], "needs name= or a tool_call_id"),
    ],
)
async def test_bad_messages_are_refused_before_io(
    drive: Drive, model: ChatYandexGPT, emu: Emulator, messages: list[BaseMessage], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        await drive.invoke(model, messages)
    with pytest.raises(ValueError, match=match):
        await drive.stream(model, messages)
    assert emu.calls == []


# -- stop sequences: the API has none ---------------------------------------------------------------


async def test_stop_is_refused_before_io(drive: Drive, make_model: Any, emu: Emulator) -> None:
    match = r"YandexGPT has no stop sequences \(the API's CompletionOptions"
    with pytest.raises(ValueError, match=match):
        await drive.invoke(make_model(), "hi", stop=["\n"])
    with pytest.raises(ValueError, match=match):
        await drive.stream(make_model(stop=["END"]), "hi")
    assert emu.calls == []
    await drive.invoke(make_model(stop=[]), "hi")  # an empty list asks for nothing
    assert len(emu.calls) == 1


def test_ls_params(make_model: Any) -> None:
    model = make_model(temperature=0.2, max_tokens=7, stop=["x"])
    assert model._get_ls_params() == {
        "ls_provider": "yandex",
        "ls_model_name": "yandexgpt-lite",
        "ls_model_type": "chat",
        "ls_temperature": 0.2,
        "ls_max_tokens": 7,
        "ls_stop": ["x"],
    }
    assert model._get_ls_params(model="yandexgpt", stop=["y"])["ls_model_name"] == "yandexgpt"


# -- streaming --------------------------------------------------------------------------------------


async def test_stream(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["Hel", "lo, ", "world"], usage=(3, 4, 7, 1)))
    chunks = await drive.stream(model, "hi")
    assert [c.content for c in chunks] == ["Hel", "lo, ", "world", ""]
    assert emu.calls[0].request.completion_options.stream
    assert [c.usage_metadata is not None for c in chunks] == [False, False, False, True]  # usage once, at the end
    assert chunks[-1].chunk_position == "last"
    full = add_up(chunks)
    assert full.content == "Hello, world"
    assert full.usage_metadata == {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
        "input_token_details": {},
        "output_token_details": {"reasoning": 1},
    }
    assert full.response_metadata["finish_reason"] == "FINAL" and full.response_metadata["model_name"]


class _Ends(BaseCallbackHandler):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.texts.append(response.generations[0][0].text)


async def test_a_replaced_text_is_not_concatenated(drive: Drive, make_model: Any, emu: Emulator) -> None:
    """A content filter swaps the text: LangChain's aggregate holds only the new one."""
    script = Reply(
        chunks=["Sure, the secret ", "is 42"], status="CONTENT_FILTER", final_text="I cannot talk about that."
    )

    emu.enqueue("Completion", script)
    ends = _Ends()
    chunks = await drive.stream(make_model(), "tell me", config={"callbacks": [ends]})
    assert [c.content for c in chunks[:-1]] == ["", "", "I cannot talk about that."]  # the withdrawn chunks, emptied
    assert chunks[2].response_metadata["replaced"] is True
    assert ends.texts == ["I cannot talk about that."]  # what LangChain merged for the run
    replaced_at = max(i for i, c in enumerate(chunks) if c.response_metadata.get("replaced"))
    assert add_up(chunks[replaced_at:]).content == "I cannot talk about that."
    assert add_up(chunks).response_metadata["finish_reason"] == "CONTENT_FILTER"

    emu.enqueue("Completion", script)
    msg = await drive.invoke(make_model(streaming=True), "tell me")  # invoke, merged from the stream
    assert emu.calls[-1].request.completion_options.stream
    assert msg.content == "I cannot talk about that."
    assert msg.response_metadata["finish_reason"] == "CONTENT_FILTER"


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
async def test_a_replaced_text_in_the_event_protocol(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    """stream_events(version="v3"): the block's finish event carries the text as it finally stood."""
    emu.enqueue("Completion", Reply(chunks=["Sure, ", "is 42"], status="CONTENT_FILTER", final_text="I cannot."))
    if drive.kind == "async":
        stream: Any = await model.astream_events("hi", version="v3")
        events = [e async for e in stream]
        message = await stream.output
    else:

        def run() -> tuple[list[Any], Any]:
            stream = model.stream_events("hi", version="v3")
            return list(stream), stream.output

        events, message = await asyncio.to_thread(run)
    deltas = [e["delta"]["text"] for e in events if e["event"] == "content-block-delta"]
    assert deltas == ["Sure, ", "is 42", "I cannot."]  # as they came
    [finish] = [e for e in events if e["event"] == "content-block-finish"]
    assert finish["content"]["text"] == "I cannot."
    assert message.text == "I cannot." and message.response_metadata["finish_reason"] == "CONTENT_FILTER"


# -- errors: ours, unchanged ------------------------------------------------------------------------


async def test_errors_surface_unchanged(drive: Drive, make_model: Any, yandexgpt_emulator_factory: Any) -> None:
    strict = yandexgpt_emulator_factory(api_keys=["the-right-key"])
    model = make_model(endpoint=strict.address, api_key="a-wrong-key", max_retries=0)
    with pytest.raises(AuthenticationError) as err:
        await drive.invoke(model, "hi")
    assert "a-wrong-key" not in str(err.value)
    with pytest.raises(AuthenticationError):
        await drive.stream(model, "hi")


async def test_an_error_mid_stream_keeps_the_partial(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(code=grpc.StatusCode.UNAVAILABLE, after=2, chunks=["Hel", "lo"]))
    seen: list[AIMessageChunk] = []

    async def consume() -> None:
        if drive.kind == "async":
            async for chunk in model.astream("hi"):
                seen.append(chunk)
        else:
            await asyncio.to_thread(lambda: seen.extend(model.stream("hi")))

    with pytest.raises(StreamInterruptedError) as err:
        await consume()
    assert isinstance(err.value, UnavailableError)
    assert err.value.partial is not None and err.value.partial.text == "Hello"
    assert "".join(str(c.content) for c in seen) == "Hello"


async def test_retries_are_the_clients(drive: Drive, make_model: Any, emu: Emulator) -> None:
    emu.fail_next(1, code=grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(PermissionDeniedError):
        await drive.invoke(make_model(), "hi")
    emu.fail_next(1, code=grpc.StatusCode.UNAVAILABLE)
    model = make_model(client_options={"retry": __import__("yandexgpt_grpc").RetryPolicy(initial_backoff=0.01)})
    assert (await drive.invoke(model, "hi")).content


# -- tools --------------------------------------------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def get_time(city: str) -> str:
    """The local time in a city."""
    return "12:00"


@pytest.mark.parametrize(
    ("choice", "field", "value"),
    [
        ("any", "mode", 3),
        ("required", "mode", 3),
        (True, "mode", 3),
        ("auto", "mode", 2),
        ("none", "mode", 1),
        ("get_time", "function_name", "get_time"),
        ({"type": "function", "function": {"name": "get_time"}}, "function_name", "get_time"),
        ({"type": "tool", "name": "get_time"}, "function_name", "get_time"),
        ({"type": "any"}, "mode", 3),
    ],
)
async def test_tool_choice(
    drive: Drive, model: ChatYandexGPT, emu: Emulator, choice: Any, field: str, value: Any
) -> None:
    bound = model.bind_tools([get_weather, get_time], tool_choice=choice)
    await drive.invoke(bound, "hi")
    req = emu.calls[0].request
    assert [t.function.name for t in req.tools] == ["get_weather", "get_time"]
    assert req.tool_choice.WhichOneof("ToolChoice") == field and getattr(req.tool_choice, field) == value


@pytest.mark.parametrize(
    ("choice", "error", "match"),
    [
        ("get_date", ValueError, "names no bound tool; tools: get_weather"),
        ({"type": "function", "function": {"name": "get_date"}}, ValueError, "names no bound tool"),
        ({"type": "banana"}, ValueError, "unsupported tool_choice dict"),
        (3, TypeError, "tool_choice must be"),
    ],
)
def test_bad_tool_choice_at_bind_time(model: ChatYandexGPT, choice: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        model.bind_tools([get_weather], tool_choice=choice)


async def test_agent_loop(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    bound = model.bind_tools([get_weather, get_time])
    history: list[BaseMessage] = [HumanMessage("What is the weather in 'Oslo'?")]
    call = await drive.invoke(bound, history)
    assert call.content == "" and call.response_metadata["finish_reason"] == "TOOL_CALLS"
    [tc] = call.tool_calls
    assert tc["name"] == "get_weather" and tc["args"] == {"city": "Oslo"} and tc["id"].startswith("call_")
    history += [call, get_weather.invoke(tc)]
    answer = await drive.invoke(bound, history)
    assert answer.content == "Tool results: get_weather: sunny in Oslo."
    sent = emu.calls[1].request.messages
    assert [m.WhichOneof("Content") for m in sent] == ["text", "tool_call_list", "tool_result_list"]


async def test_tool_calls_in_a_stream(drive: Drive, model: ChatYandexGPT) -> None:
    chunks = await drive.stream(model.bind_tools([get_weather], tool_choice="get_weather"), "Weather in 'Rome'?")
    full = add_up(chunks)
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("get_weather", {"city": "Rome"})]
    assert full.tool_calls[0]["id"]


# -- structured output --------------------------------------------------------------------------------


class Joke(BaseModel):
    setup: str
    punchline: str


class JokeDict(TypedDict):
    setup: str
    punchline: str


JOKE_SCHEMA = Joke.model_json_schema()


@pytest.mark.parametrize("schema", [Joke, JokeDict, JOKE_SCHEMA], ids=["pydantic", "TypedDict", "json-schema"])
async def test_structured_output_json_schema(drive: Drive, model: ChatYandexGPT, emu: Emulator, schema: Any) -> None:
    result = await drive.invoke(model.with_structured_output(schema), "A joke")
    expected = {"setup": "sample setup", "punchline": "sample punchline"}
    assert (result.model_dump() if isinstance(result, Joke) else result) == expected
    sent = json_format.MessageToDict(emu.calls[0].request.json_schema.schema)
    assert sent == convert_to_json_schema(schema)
    streamed = await drive.stream(model.with_structured_output(schema), "A joke")
    last = streamed[-1]
    assert (last.model_dump() if isinstance(last, Joke) else last) == expected


@pytest.mark.parametrize("schema", [Joke, JOKE_SCHEMA], ids=["pydantic", "json-schema"])
async def test_structured_output_function_calling(
    drive: Drive, model: ChatYandexGPT, emu: Emulator, schema: Any
) -> None:
    result = await drive.invoke(model.with_structured_output(schema, method="function_calling", strict=True), "joke")
    assert (result.model_dump() if isinstance(result, Joke) else result) == {
        "setup": "sample setup",
        "punchline": "sample punchline",
    }
    req = emu.calls[0].request
    assert req.tool_choice.function_name == "Joke" and req.tools[0].function.strict


async def test_structured_output_json_mode(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    chat = model.with_structured_output(Joke, method="json_mode")
    result = await drive.invoke(chat, "A joke as JSON with 'setup' and 'punchline' keys")
    assert result == Joke(setup="sample setup", punchline="sample punchline")
    assert emu.calls[0].request.json_object


async def test_include_raw(drive: Drive, model: ChatYandexGPT, emu: Emulator) -> None:
    chat = model.with_structured_output(Joke, include_raw=True)
    out = await drive.invoke(chat, "joke")
    assert isinstance(out["raw"], AIMessage) and out["parsing_error"] is None
    assert out["parsed"] == Joke(**json.loads(str(out["raw"].content)))
    emu.enqueue("Completion", Reply(chunks=['{"setup": "cut o']))
    bad = await drive.invoke(chat, "joke")
    assert bad["parsed"] is None and bad["parsing_error"] is not None
    assert bad["raw"].content == '{"setup": "cut o'


def test_bad_structured_output_arguments(model: ChatYandexGPT) -> None:
    with pytest.raises(ValueError, match="unknown method 'xml'"):
        model.with_structured_output(Joke, method="xml")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected arguments"):
        model.with_structured_output(Joke, tools=[])


# -- configuration and the clients' lifecycle -------------------------------------------------------


async def test_environment(drive: Drive, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "key-from-env")
    monkeypatch.setenv("YC_FOLDER_ID", "b1g-from-env")
    monkeypatch.setenv("YANDEXGPT_ENDPOINT", emu.address)
    model = ChatYandexGPT(insecure=True)
    try:
        await drive.invoke(model, "hi")
    finally:
        await model.aclose()
    call = emu.calls[0]
    assert call.header("authorization") == "Api-Key key-from-env"
    assert call.request.model_uri == "gpt://b1g-from-env/yandexgpt-lite/latest"
    assert "key-from-env" not in repr(model) and "key-from-env" not in str(model.model_dump())


def test_one_credential_only() -> None:
    with pytest.raises(ValueError, match="only one of credentials=, api_key=, iam_token="):
        ChatYandexGPT(api_key="a", iam_token="b")


def test_iam_token(emu: Emulator) -> None:
    model = ChatYandexGPT(endpoint=emu.address, insecure=True, folder_id=FOLDER, iam_token="t1")
    model.invoke("hi")
    model.close()
    assert emu.calls[0].header("authorization") == "Bearer t1"


def test_one_client_per_model_made_lazily_and_closed(model: ChatYandexGPT) -> None:
    assert model._clients.client is None  # nothing made before the first call
    model.invoke("a")
    client = model.client
    model.invoke("b")
    assert model.client is client
    model.close()
    assert client._closed
    model.invoke("c")  # a new client after close()
    assert model.client is not client


async def test_one_async_client_per_loop_closed_by_aclose(model: ChatYandexGPT) -> None:
    await model.ainvoke("a")
    aclient = model.async_client
    await model.ainvoke("b")
    assert model.async_client is aclient
    await model.aclose()
    assert aclient._closed
    await model.ainvoke("c")
    assert model.async_client is not aclient


def test_an_async_client_per_event_loop(model: ChatYandexGPT) -> None:
    first = asyncio.run(model.ainvoke("a"))
    second = asyncio.run(model.ainvoke("b"))  # a second loop: the first loop's channel cannot serve it
    assert first.content and second.content


def test_garbage_collection_closes_the_client(make_model: Any, emu: Emulator) -> None:
    model = ChatYandexGPT(endpoint=emu.address, insecure=True, folder_id=FOLDER, api_key="k")
    model.invoke("hi")
    client = model.client
    del model
    gc.collect()
    assert client._closed


async def test_garbage_collection_closes_the_async_client(emu: Emulator) -> None:
    model = ChatYandexGPT(endpoint=emu.address, insecure=True, folder_id=FOLDER, api_key="k")
    await model.ainvoke("hi")
    aclient = model.async_client
    del model
    gc.collect()
    for _ in range(20):  # closed on its loop, soon
        if aclient._closed:
            break
        await asyncio.sleep(0.01)
    assert aclient._closed
