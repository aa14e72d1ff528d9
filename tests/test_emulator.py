"""The emulator driven through the raw generated stubs: model, validation, auth, scripts, operations.

Faults, capture, cancellation, TLS, concurrency, the CLI and the yandexcloud interop live in
test_emulator_faults.py.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator

import grpc
import pytest

from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import (
    operation_service_pb2,
    operation_service_pb2_grpc,
)
from yandexgpt_grpc.testing import Emulator, Fault, OperationScript, Reply

AUTH = (("authorization", "Api-Key test-key"),)
URI = "gpt://b1gfolder/yandexgpt-lite/latest"
PARTIAL, TRUNCATED, FINAL, CONTENT_FILTER, TOOL_CALLS = 1, 2, 3, 4, 5


def make_request(
    text: str = "Hello, emulator!",
    *,
    stream: bool = False,
    system: str | None = None,
    uri: str = URI,
) -> tg_pb2.CompletionRequest:
    req = tg_pb2.CompletionRequest(model_uri=uri)
    req.completion_options.stream = stream
    if system is not None:
        req.messages.add(role="system", text=system)
    req.messages.add(role="user", text=text)
    return req


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.gen = tg_grpc.TextGenerationServiceStub(channel)
        self.async_gen = tg_grpc.TextGenerationAsyncServiceStub(channel)
        self.tok = tg_grpc.TokenizerServiceStub(channel)
        self.ops = operation_service_pb2_grpc.OperationServiceStub(channel)

    def complete(self, req: tg_pb2.CompletionRequest, metadata=AUTH) -> list:
        return list(self.gen.Completion(req, metadata=metadata, timeout=5))

    def get(self, op_id: str):
        return self.ops.Get(operation_service_pb2.GetOperationRequest(operation_id=op_id), metadata=AUTH, timeout=5)


@pytest.fixture
def emu(yandexgpt_emulator: Emulator) -> Emulator:
    return yandexgpt_emulator


@pytest.fixture
def stubs(emu: Emulator) -> Iterator[Stubs]:
    with grpc.insecure_channel(emu.address) as channel:
        yield Stubs(channel)


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = fn(*args, **kwargs)
        if not isinstance(result, tg_pb2.TokenizeResponse) and hasattr(result, "__iter__"):
            list(result)
    return info.value


# -- default model ------------------------------------------------------------------------------


def test_fixture_serves_on_loopback(emu: Emulator) -> None:
    assert emu.running
    assert emu.port > 0
    assert emu.address == f"127.0.0.1:{emu.port}"
    assert emu.root_certificates is None


def test_non_stream_sends_one_final_response_with_ids(stubs: Stubs, emu: Emulator) -> None:
    call = stubs.gen.Completion(make_request("Hello, world"), metadata=AUTH, timeout=5)
    responses = list(call)
    assert len(responses) == 1
    (alt,) = responses[0].alternatives
    assert alt.status == FINAL
    assert alt.message.role == "assistant"
    assert 'You said: "Hello, world".' in alt.message.text
    assert responses[0].model_version == "emulator-1.0"
    usage = responses[0].usage
    assert usage.total_tokens == usage.input_text_tokens + usage.completion_tokens
    initial = dict(call.initial_metadata())
    assert initial["x-request-id"] == emu.calls[-1].request_id
    assert initial["x-server-trace-id"]


def test_stream_sends_cumulative_partials_then_terminal(stubs: Stubs) -> None:
    responses = stubs.complete(make_request("Tell me something nice", stream=True))
    texts = [r.alternatives[0].message.text for r in responses]
    statuses = [r.alternatives[0].status for r in responses]
    assert len(responses) >= 3
    assert statuses == [PARTIAL] * (len(responses) - 1) + [FINAL]
    for i in range(1, len(texts)):
        assert texts[i].startswith(texts[i - 1])
    assert texts[-1] == texts[-2]
    completion = [r.usage.completion_tokens for r in responses]
    assert completion == sorted(completion)


def test_default_model_is_deterministic_and_shows_system_prompt(stubs: Stubs) -> None:
    req = make_request("Hi", system="Answer like a pirate")
    first = stubs.complete(req)[0].alternatives[0].message.text
    assert first == stubs.complete(req)[0].alternatives[0].message.text
    assert first.startswith("[Answer like a pirate] ")


def test_max_tokens_truncates(stubs: Stubs) -> None:
    req = make_request("one two three four five six")
    req.completion_options.max_tokens.value = 3
    (resp,) = stubs.complete(req)
    assert resp.alternatives[0].status == TRUNCATED
    assert resp.usage.completion_tokens == 3
    assert resp.alternatives[0].message.text == "You said:"


def test_json_object_and_json_schema(stubs: Stubs) -> None:
    req = make_request("Give JSON")
    req.json_object = True
    text = stubs.complete(req)[0].alternatives[0].message.text
    assert "Give JSON" in json.loads(text)["answer"]

    req = make_request("Give a person")
    req.json_schema.schema.update(
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "kind": {"enum": ["cat", "dog"]},
                "optional": {"type": "boolean"},
            },
            "required": ["name", "age", "tags", "kind"],
        }
    )
    value = json.loads(stubs.complete(req)[0].alternatives[0].message.text)
    assert set(value) == {"name", "age", "tags", "kind"}
    assert isinstance(value["name"], str)
    assert isinstance(value["age"], int)
    assert isinstance(value["tags"], list)
    assert value["kind"] == "cat"


def _with_tools(req: tg_pb2.CompletionRequest) -> tg_pb2.CompletionRequest:
    for name in ("get_weather", "get_time"):
        fn = req.tools.add().function
        fn.name = name
        fn.parameters.update(
            {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            }
        )
    return req


def test_tool_choice_required_and_named(stubs: Stubs) -> None:
    assert stubs.complete(_with_tools(make_request("Hello?")))[0].alternatives[0].status == FINAL  # tools alone
    req = _with_tools(make_request("Weather in Paris?"))
    named = stubs.complete(req)[0].alternatives[0]  # the prompt names get_weather ("weather"): it is called
    assert named.status == TOOL_CALLS and named.message.tool_call_list.tool_calls[0].function_call.name == "get_weather"

    req.tool_choice.mode = 3  # REQUIRED -> first tool
    (resp,) = stubs.complete(req)
    alt = resp.alternatives[0]
    assert alt.status == TOOL_CALLS
    (tc,) = alt.message.tool_call_list.tool_calls
    assert tc.function_call.name == "get_weather"
    assert set(tc.function_call.arguments.fields) == {"city"}

    req.tool_choice.function_name = "get_time"
    req.completion_options.stream = True
    responses = stubs.complete(req)
    assert [r.alternatives[0].status for r in responses] == [TOOL_CALLS]
    assert responses[0].alternatives[0].message.tool_call_list.tool_calls[0].function_call.name == ("get_time")


def test_tool_results_are_mentioned(stubs: Stubs) -> None:
    req = make_request("Weather in Paris?")
    msg = req.messages.add(role="user")
    result = msg.tool_result_list.tool_results.add().function_result
    result.name = "get_weather"
    result.content = "sunny, 21C"
    text = stubs.complete(req)[0].alternatives[0].message.text
    assert "get_weather: sunny, 21C" in text


def test_reasoning_tokens_counted(stubs: Stubs) -> None:
    req = make_request("Think hard")
    plain = stubs.complete(req)[0].usage
    req.completion_options.reasoning_options.mode = 2  # ENABLED_HIDDEN
    usage = stubs.complete(req)[0].usage
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning > 0
    assert usage.completion_tokens == plain.completion_tokens + reasoning
    assert usage.total_tokens == usage.input_text_tokens + usage.completion_tokens


# -- validation ---------------------------------------------------------------------------------


def _bad(kind: str) -> tg_pb2.CompletionRequest:
    req = make_request()
    if kind == "missing_uri":
        req.model_uri = ""
    elif kind == "bad_uri":
        req.model_uri = "yandexgpt-lite"
    elif kind == "empty_messages":
        del req.messages[:]
    elif kind == "unknown_role":
        req.messages.add(role="bot", text="hi")
    elif kind == "temperature_high":
        req.completion_options.temperature.value = 1.5
    elif kind == "temperature_low":
        req.completion_options.temperature.value = -0.1
    elif kind == "max_tokens":
        req.completion_options.max_tokens.value = 0
    return req


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing_uri", "invalid model_uri"),
        ("bad_uri", "invalid model_uri"),
        ("empty_messages", "messages must not be empty"),
        ("unknown_role", "unknown role 'bot'"),
        ("temperature_high", "temperature must be within [0, 1]"),
        ("temperature_low", "temperature must be within [0, 1]"),
        ("max_tokens", "max_tokens must be positive"),
    ],
)
def test_validation_errors(stubs: Stubs, emu: Emulator, kind: str, fragment: str) -> None:
    err = rpc_error(stubs.complete, _bad(kind))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.details()
    assert emu.calls[-1].code == grpc.StatusCode.INVALID_ARGUMENT
    # the same checks guard the async and tokenizer entry points
    err = rpc_error(stubs.async_gen.Completion, _bad(kind), metadata=AUTH, timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_valid_edge_values_and_ds_uri(stubs: Stubs) -> None:
    req = make_request(uri="ds://bt1abc/deployment")
    req.completion_options.temperature.value = 1.0
    req.completion_options.max_tokens.value = 1
    assert stubs.complete(req)[0].alternatives[0].status == TRUNCATED


def test_folder_mismatch(stubs: Stubs, yandexgpt_emulator_factory) -> None:
    err = rpc_error(stubs.complete, make_request(), metadata=(*AUTH, ("x-folder-id", "other")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-folder-id" in err.details()
    assert stubs.complete(make_request(), metadata=(*AUTH, ("x-folder-id", "b1gfolder")))

    emu2 = yandexgpt_emulator_factory(folder_id="b1gmine")
    with grpc.insecure_channel(emu2.address) as channel:
        err = rpc_error(Stubs(channel).complete, make_request())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "b1gmine" in err.details()


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ((), "missing authorization"),
        ((("authorization", "Basic abc"),), "malformed authorization"),
        ((("authorization", "Api-Key"),), "malformed authorization"),
        ((("authorization", "Bearer "),), "malformed authorization"),
    ],
)
def test_auth_required(stubs: Stubs, emu: Emulator, metadata, fragment: str) -> None:
    err = rpc_error(stubs.complete, make_request(), metadata=metadata)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert fragment in err.details()
    assert "Api-Key <API key>" in err.details()
    assert emu.calls[-1].code == grpc.StatusCode.UNAUTHENTICATED
    assert dict(err.trailing_metadata())["x-request-id"] == emu.calls[-1].request_id


def test_any_credential_accepted_by_default(stubs: Stubs) -> None:
    for value in ("Api-Key anything", "Bearer t1.some-token", "api-key lower-case-scheme"):
        assert stubs.complete(make_request(), metadata=(("authorization", value),))


def test_allow_lists(yandexgpt_emulator_factory) -> None:
    emu = yandexgpt_emulator_factory(api_keys=["good-key"], iam_tokens=["good-token"])
    with grpc.insecure_channel(emu.address) as channel:
        s = Stubs(channel)
        assert s.complete(make_request(), metadata=(("authorization", "Api-Key good-key"),))
        assert s.complete(make_request(), metadata=(("authorization", "Bearer good-token"),))
        for value in ("Api-Key bad-secret", "Bearer bad-secret"):
            err = rpc_error(s.complete, make_request(), metadata=(("authorization", value),))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bad-secret" not in err.details()
        emu.add_iam_token("issued-later")
        assert s.complete(make_request(), metadata=(("authorization", "Bearer issued-later"),))
        emu.remove_iam_token("issued-later")
        err = rpc_error(s.complete, make_request(), metadata=(("authorization", "Bearer issued-later"),))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_runtime_credentials_in_accept_any_mode(stubs: Stubs, emu: Emulator) -> None:
    def code(value: str) -> grpc.StatusCode:
        try:
            stubs.complete(make_request(), metadata=(("authorization", value),))
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    emu.add_iam_token("t1.issued")  # bearer tokens become allow-listed, API keys stay open
    assert code("Bearer t1.issued") == grpc.StatusCode.OK
    assert code("Bearer t1.random") == grpc.StatusCode.UNAUTHENTICATED
    assert code("Api-Key whatever") == grpc.StatusCode.OK
    emu.remove_api_key("leaked")  # refusing one key keeps accepting the others
    assert code("Api-Key leaked") == grpc.StatusCode.UNAUTHENTICATED
    assert code("Api-Key whatever") == grpc.StatusCode.OK


def test_operation_and_tokenizer_services_require_auth(stubs: Stubs) -> None:
    err = rpc_error(stubs.ops.Get, operation_service_pb2.GetOperationRequest(operation_id="x"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = rpc_error(stubs.tok.Tokenize, tg_pb2.TokenizeRequest(model_uri=URI, text="a"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# -- scripted replies ---------------------------------------------------------------------------


def test_scripted_reply_stream_and_fifo(stubs: Stubs, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["Hel", "lo"]), Reply(chunks=["Second"]))
    assert emu.pending("Completion") == 2
    responses = stubs.complete(make_request(stream=True))
    assert [(r.alternatives[0].message.text, r.alternatives[0].status) for r in responses] == [
        ("Hel", PARTIAL),
        ("Hello", PARTIAL),
        ("Hello", FINAL),
    ]
    (second,) = stubs.complete(make_request())  # non-stream: terminal only
    assert second.alternatives[0].message.text == "Second"
    default = stubs.complete(make_request("x"))[0].alternatives[0].message.text
    assert default.startswith('You said: "x".')


def test_scripted_content_filter_replaces_text(stubs: Stubs, emu: Emulator) -> None:
    emu.enqueue(
        "Completion",
        Reply(chunks=["Some ", "risky "], status="CONTENT_FILTER", final_text="[removed]"),
    )
    responses = stubs.complete(make_request(stream=True))
    last = responses[-1].alternatives[0]
    assert last.status == CONTENT_FILTER
    assert last.message.text == "[removed]"
    assert responses[-2].alternatives[0].message.text == "Some risky "


def test_scripted_tool_calls_usage_and_metadata(stubs: Stubs, emu: Emulator) -> None:
    emu.enqueue(
        "Completion",
        Reply(
            chunks=[],
            status="TOOL_CALLS",
            tool_calls=[{"name": "lookup", "arguments": {"q": "cats", "n": 2}}],
            usage=(10, 5, 15, 2),
            initial_metadata=(("x-extra", "1"),),
            trailing_metadata=(("x-trailer-bin", b"\x00\x01"),),
        ),
    )
    call = stubs.gen.Completion(make_request(), metadata=AUTH, timeout=5)
    (resp,) = list(call)
    tc = resp.alternatives[0].message.tool_call_list.tool_calls[0].function_call
    assert tc.name == "lookup"
    assert tc.arguments["q"] == "cats"
    assert tc.arguments["n"] == 2
    usage = resp.usage
    assert (usage.input_text_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
    assert usage.completion_tokens_details.reasoning_tokens == 2
    assert dict(call.initial_metadata())["x-extra"] == "1"
    assert dict(call.trailing_metadata())["x-trailer-bin"] == b"\x00\x01"


def test_scripted_incomplete_stream(stubs: Stubs, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["a", "b"], terminal=False))
    responses = stubs.complete(make_request(stream=True))
    assert [r.alternatives[0].status for r in responses] == [PARTIAL, PARTIAL]
    assert emu.calls[-1].code == grpc.StatusCode.OK


def test_script_validation(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        emu.enqueue("Complete", Reply())
    with pytest.raises(TypeError):
        emu.enqueue("Completion", OperationScript())
    with pytest.raises(ValueError, match="unknown alternative status"):
        Reply(status="DONE")


def test_reset_clears_everything(stubs: Stubs, emu: Emulator) -> None:
    emu.enqueue("Completion", Fault())
    stubs.async_gen.Completion(make_request(), metadata=AUTH, timeout=5)
    emu.reset()
    assert emu.calls == []
    assert emu.operations == {}
    assert emu.pending("Completion") == 0
    assert stubs.complete(make_request())


# -- tokenizer ----------------------------------------------------------------------------------


def test_tokenize_is_stable_and_lossless(stubs: Stubs) -> None:
    text = "Hello, world! Привет, мир."
    resp = stubs.tok.Tokenize(tg_pb2.TokenizeRequest(model_uri=URI, text=text), metadata=AUTH)
    assert "".join(t.text for t in resp.tokens) == text
    assert [t.id for t in resp.tokens] == [zlib.crc32(t.text.encode()) % 100_000 for t in resp.tokens]
    assert resp.model_version == "emulator-1.0"


def test_tokenize_completion_matches_usage(stubs: Stubs) -> None:
    req = make_request("What is the capital of France?", system="Be concise.")
    req.messages.add(role="assistant", text="Paris.")
    req.messages.add(role="user", text="And of Italy?")
    tokens = stubs.tok.TokenizeCompletion(req, metadata=AUTH, timeout=5).tokens
    usage = stubs.complete(req)[0].usage
    assert len(tokens) == usage.input_text_tokens > 0
    err = rpc_error(stubs.tok.TokenizeCompletion, _bad("unknown_role"), metadata=AUTH)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- async operations ---------------------------------------------------------------------------


def test_operation_pending_then_done(stubs: Stubs, emu: Emulator) -> None:
    op = stubs.async_gen.Completion(make_request("async please"), metadata=AUTH, timeout=5)
    assert op.id
    assert not op.done
    assert op.created_at.seconds > 0
    assert not stubs.get(op.id).done
    done = stubs.get(op.id)
    assert done.done
    assert done.WhichOneof("result") == "response"
    resp = tg_pb2.CompletionResponse()
    assert done.response.Unpack(resp)
    assert 'You said: "async please".' in resp.alternatives[0].message.text
    assert resp.alternatives[0].status == FINAL
    assert emu.operations[op.id].done


def test_operation_scripts(stubs: Stubs, emu: Emulator) -> None:
    emu.enqueue(
        "AsyncCompletion",
        OperationScript(done_after_polls=0, response=Reply(chunks=["scripted"])),
        OperationScript(done_after_polls=1, error=(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")),
        OperationScript(done_after_seconds=0.05),
    )
    op = stubs.async_gen.Completion(make_request(), metadata=AUTH, timeout=5)
    assert op.done
    resp = tg_pb2.CompletionResponse()
    op.response.Unpack(resp)
    assert resp.alternatives[0].message.text == "scripted"

    op = stubs.async_gen.Completion(make_request(), metadata=AUTH, timeout=5)
    failed = stubs.get(op.id)
    assert failed.done
    assert (failed.error.code, failed.error.message) == (8, "quota")

    op = stubs.async_gen.Completion(make_request(), metadata=AUTH, timeout=5)
    assert not stubs.get(op.id).done
    assert emu.wait_for(lambda: stubs.get(op.id).done, timeout=1)


def test_operation_cancel_and_not_found(stubs: Stubs) -> None:
    op = stubs.async_gen.Completion(make_request(), metadata=AUTH, timeout=5)
    cancelled = stubs.ops.Cancel(operation_service_pb2.CancelOperationRequest(operation_id=op.id), metadata=AUTH)
    assert cancelled.done
    assert cancelled.error.code == 1
    assert stubs.get(op.id).error.code == 1
    err = rpc_error(stubs.get, "nope")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(
        stubs.ops.Cancel,
        operation_service_pb2.CancelOperationRequest(operation_id="nope"),
        metadata=AUTH,
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


# -- async usage --------------------------------------------------------------------------------


async def test_async_context_manager_with_aio_client() -> None:
    async with Emulator() as emu:
        async with grpc.aio.insecure_channel(emu.address) as channel:
            stub = tg_grpc.TextGenerationServiceStub(channel)
            texts = [
                r.alternatives[0].message.text
                async for r in stub.Completion(make_request(stream=True), metadata=AUTH, timeout=5)
            ]
        assert len(texts) >= 3
    assert not emu.running
