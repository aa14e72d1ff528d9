"""A LangChain chat model on this package's clients: `pip install 'yandexgpt-grpc[langchain]'`.

`ChatYandexGPT` speaks LangChain (messages, tools, structured output, streaming, usage metadata)
and calls the API through one `Client` and one `AsyncClient` per model instance, made on first use
and closed by `close()` / `aclose()` or when the model is garbage-collected. Errors are this
package's own (`yandexgpt_grpc.RateLimitError` and so on), raised unchanged.

`import yandexgpt_grpc` does not import this module (nor langchain).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from ._async_client import AsyncClient
from ._client import Client
from ._constants import ENV_ENDPOINT, ENV_FOLDER_ID
from ._types import Alternative, CompletionResult, Message, ToolCall, ToolResult, Usage

__all__ = ["ChatYandexGPT"]

_ENV_API_KEY = "YC_API_KEY"
_ENV_IAM_TOKEN = "YC_IAM_TOKEN"
_PROVIDER = "yandex"
# Call-time keyword arguments that go to the API as generation options.
_OPTIONS = frozenset(
    {"temperature", "max_tokens", "reasoning_mode", "tools", "tool_choice", "parallel_tool_calls", "response_format"}
)
_NO_STOP = (
    "YandexGPT has no stop sequences (the API's CompletionOptions has only stream, temperature, "
    "max_tokens and reasoning_options): drop stop=, or cut the text yourself"
)


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _secret_env(name: str) -> Callable[[], SecretStr | None]:
    def read() -> SecretStr | None:
        value = os.environ.get(name)
        return SecretStr(value) if value else None

    return read


class _Clients:
    """The model's clients, apart from the model so that a finalizer can close them without it."""

    __slots__ = ("aclient", "aloop", "client", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Client | None = None
        self.aclient: AsyncClient | None = None
        self.aloop: asyncio.AbstractEventLoop | None = None

    def close_sync(self) -> None:
        with self.lock:
            client, self.client = self.client, None
        if client is not None:
            client.close()

    def take_async(self) -> tuple[AsyncClient | None, asyncio.AbstractEventLoop | None]:
        with self.lock:
            aclient, loop = self.aclient, self.aloop
            self.aclient = self.aloop = None
        return aclient, loop

    def close_all(self) -> None:
        self.close_sync()
        self.close_async()

    def close_async(self) -> None:
        """Best effort without awaiting: the async client is closed on its own loop if that still runs."""
        aclient, loop = self.take_async()
        if aclient is None or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile; grpc frees the channel with it
            loop.call_soon_threadsafe(lambda: loop.create_task(aclient.close()))


class ChatYandexGPT(BaseChatModel):
    """YandexGPT as a LangChain chat model, over gRPC.

    Model name, folder, credentials and endpoint fall back to the environment variables the
    clients read (YC_FOLDER_ID, YC_API_KEY, YC_IAM_TOKEN, YANDEXGPT_ENDPOINT). The API has no stop
    sequences, so a call with `stop` set raises ValueError before anything is sent.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model_name: str = Field(default="yandexgpt-lite", alias="model")
    """A short name (`yandexgpt-lite`, `yandexgpt/rc`; needs a folder) or a full `gpt://` URI."""
    folder_id: str | None = Field(default_factory=lambda: _env(ENV_FOLDER_ID))
    api_key: SecretStr | None = Field(default_factory=_secret_env(_ENV_API_KEY))
    iam_token: SecretStr | None = Field(default_factory=_secret_env(_ENV_IAM_TOKEN))
    credentials: Any = Field(default=None, exclude=True)
    """A `yandexgpt_grpc.Credentials` (service account key, metadata service...) instead of a key or token."""
    endpoint: str | None = Field(default_factory=lambda: _env(ENV_ENDPOINT))
    insecure: bool | None = None
    """Plaintext gRPC; allowed only to loopback addresses (an emulator). None: YANDEXGPT_INSECURE decides."""
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning_mode: str | None = None
    timeout: float | None = None
    """Seconds per call; None keeps the client's defaults."""
    max_retries: int | None = None
    stop: list[str] | None = None
    """Accepted for LangChain's standard parameters; a non-empty value is refused at call time."""
    streaming: bool = False
    client_options: dict[str, Any] = Field(default_factory=dict)
    """More `Client(...)` arguments: metadata, retry, data_logging, channel_options, root_certificates..."""

    _clients: _Clients = PrivateAttr(default_factory=_Clients)

    @model_validator(mode="after")
    def _check(self) -> ChatYandexGPT:
        explicit = [n for n in ("credentials", "api_key", "iam_token") if n in self.model_fields_set]
        explicit = [n for n in explicit if getattr(self, n) is not None]
        if len(explicit) > 1:
            raise ValueError(f"pass only one of credentials=, api_key=, iam_token= (got {', '.join(explicit)})")
        if self.timeout is not None and (isinstance(self.timeout, bool) or self.timeout <= 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}")
        weakref.finalize(self, self._clients.close_all)
        return self

    # -- LangChain identity ------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "yandexgpt-grpc"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "reasoning_mode": self.reasoning_mode,
        }

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["yandexgpt_grpc", "langchain"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": _ENV_API_KEY, "iam_token": _ENV_IAM_TOKEN}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=_PROVIDER,
            ls_model_name=str(kwargs.get("model") or self.model_name),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        ls_stop = stop if stop is not None else self.stop
        if ls_stop:
            params["ls_stop"] = ls_stop
        return params

    # -- clients -----------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(self.client_options)
        kwargs.update(endpoint=self.endpoint, folder_id=self.folder_id, insecure=self.insecure)
        if self.credentials is not None:
            kwargs["credentials"] = self.credentials
        elif self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        elif self.iam_token is not None:
            kwargs["iam_token"] = self.iam_token.get_secret_value()
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.max_retries is not None:
            kwargs["max_retries"] = self.max_retries
        return kwargs

    @property
    def client(self) -> Client:
        """The blocking client, made on first use."""
        holder = self._clients
        with holder.lock:
            if holder.client is None:
                holder.client = Client(**self._client_kwargs())
            return holder.client

    @property
    def async_client(self) -> AsyncClient:
        """The asyncio client of the running event loop, made on first use there.

        grpc.aio channels belong to one loop: used from another loop, a new client replaces the old.
        """
        loop = asyncio.get_running_loop()
        holder = self._clients
        with holder.lock:
            if holder.aclient is not None and holder.aloop is loop:
                return holder.aclient
        holder.close_async()  # made on another loop (say, an earlier asyncio.run)
        with holder.lock:
            if holder.aclient is None:
                holder.aclient = AsyncClient(**self._client_kwargs())
                holder.aloop = loop
            return holder.aclient

    def close(self) -> None:
        """Close the blocking client (and, best effort, the asyncio one); the model stays usable."""
        self._clients.close_all()

    async def aclose(self) -> None:
        """Close both clients; the model stays usable (new clients are made on the next call)."""
        self._clients.close_sync()
        aclient, _ = self._clients.take_async()
        if aclient is not None:
            await aclient.close()

    # -- requests ----------------------------------------------------------------------------

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> tuple[str, list[Message], dict[str, Any]]:
        """(model, messages, options) for our client; raises before any I/O."""
        if stop if stop is not None else self.stop:
            raise ValueError(_NO_STOP)
        model = kwargs.get("model") or self.model_name
        options: dict[str, Any] = {}
        for name in ("temperature", "max_tokens", "reasoning_mode"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        for key, value in kwargs.items():
            if key in _OPTIONS:
                if value is not None:
                    options[key] = value
            elif key not in ("model", "stream", "ls_structured_output_format"):
                raise TypeError(f"ChatYandexGPT got an unexpected argument {key!r}; options: {sorted(_OPTIONS)}")
        return str(model), _to_messages(messages), options

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        model, turns, options = self._request(messages, stop, kwargs)
        result = self.client.complete(model, turns, **options)
        return _chat_result(result, model)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        model, turns, options = self._request(messages, stop, kwargs)
        result = await self.async_client.complete(model, turns, **options)
        return _chat_result(result, model)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        model, turns, options = self._request(messages, stop, kwargs)
        state = _StreamChunks(model)
        with self.client.stream(model, turns, **options) as stream:
            for alt in stream:
                chunk = state.step(alt)
                if chunk is not None:
                    if run_manager is not None and chunk.text:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            yield state.last(stream.get_final())

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        model, turns, options = self._request(messages, stop, kwargs)
        state = _StreamChunks(model)
        async with self.async_client.stream(model, turns, **options) as stream:
            async for alt in stream:
                chunk = state.step(alt)
                if chunk is not None:
                    if run_manager is not None and chunk.text:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            yield state.last(await stream.get_final())

    # LangChain's event protocol (stream_events(version="v3"), v2 callback handlers) has what chunk
    # merging lacks: a block's finish event carries its authoritative text, which replaces the
    # deltas. These hooks (langchain-core 1.8+ calls them; older versions never do) send the
    # text as it finally stood, so a replaced text ends the message alone.

    def _stream_chat_model_events(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        from langchain_core.language_models._compat_bridge import chunks_to_events

        text = _FinalText()
        chunks = text.track(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
        for event in chunks_to_events(chunks):
            yield text.settle(event)

    async def _astream_chat_model_events(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        from langchain_core.language_models._compat_bridge import achunks_to_events

        text = _FinalText()
        chunks = text.atrack(self._astream(messages, stop=stop, run_manager=run_manager, **kwargs))
        async for event in achunks_to_events(chunks):
            yield text.settle(event)

    # -- tools and structured output ---------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools to the model.

        tool_choice: "auto", "none", "any"/"required"/True (call some tool), a tool's name, or a
        dict naming one (`{"type": "function", "function": {"name": ...}}`).
        """
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        names = [t["function"]["name"] for t in formatted]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = _tool_choice(tool_choice, names)
        elif tool_choice is False:
            kwargs["tool_choice"] = "none"
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Answers parsed into `schema` (a pydantic class, a TypedDict or a JSON schema dict).

        method: "json_schema" (the API's json_schema response format; the default),
        "function_calling" (a forced call of a tool built from the schema) or "json_mode" (any
        JSON object, parsed into the schema; say in the prompt which keys you want). `strict`
        applies to function_calling; the API always holds a json_schema answer to the schema.
        """
        if kwargs:
            raise TypeError(f"with_structured_output got unexpected arguments {sorted(kwargs)}")
        if schema is None:
            raise ValueError("with_structured_output needs a schema: a pydantic class, a TypedDict or a dict")
        is_model = isinstance(schema, type) and is_basemodel_subclass(schema)
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema, strict=strict)
            name = tool["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, strict=strict, ls_structured_output_format=trace)
            if is_model:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method in ("json_schema", "json_mode"):
            response_format: Any = convert_to_json_schema(schema) if method == "json_schema" else "json"
            llm = self.bind(response_format=response_format, ls_structured_output_format=trace)
            parser = PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown method {method!r}: use 'json_schema', 'function_calling' or 'json_mode'")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def _tool_choice(choice: Any, names: Sequence[str]) -> str:
    """LangChain's tool_choice values as ours: a mode or a tool name; checked against the tools."""
    if choice is True or choice in ("any", "required"):
        if not names:
            raise ValueError("tool_choice='any' needs tools")
        return "required"
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind == "function" and isinstance(choice.get("function"), Mapping):
            choice = choice["function"].get("name")
        elif kind == "tool":
            choice = choice.get("name")
        elif kind in ("any", "auto", "none"):
            return _tool_choice(kind, names)
        else:
            raise ValueError(f"unsupported tool_choice dict {dict(choice)!r}")
    if not isinstance(choice, str):
        raise TypeError(f"tool_choice must be a str, a bool or a dict, got {type(choice).__name__}")
    if choice in ("auto", "none"):
        return choice
    if choice not in names:
        raise ValueError(f"tool_choice {choice!r} names no bound tool; tools: {', '.join(names) or 'none'}")
    return choice


# -- messages ----------------------------------------------------------------------------------

_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system"}


def _text(content: Any, where: str, *, strict: bool) -> str:
    """The text of a message's content; other blocks are refused (strict) or skipped (tool_use, thinking)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif strict:
            kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
            raise ValueError(f"{where}: YandexGPT takes text only, got a {kind!r} content block")
    return "".join(parts)


def _to_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as ours; consecutive ToolMessages become one turn of tool results."""
    out: list[Message] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, from the assistant's calls
    results: list[ToolResult] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(msg, ToolMessage):
            name = msg.name or names.get(msg.tool_call_id)
            if not name:
                raise ValueError(f"{where}: a ToolMessage needs name= or a tool_call_id of an earlier tool call")
            content = msg.content
            text = content if isinstance(content, str) else _tool_content(content, where)
            results.append(ToolResult(name, text))
            continue
        if results:
            out.append(Message.with_tool_results(results))
            results = []
        if isinstance(msg, AIMessage):
            calls = []
            for call in msg.tool_calls:
                calls.append(ToolCall(call["name"], dict(call["args"])))
                if call.get("id"):
                    names[str(call["id"])] = call["name"]
            out.append(Message.assistant(_text(msg.content, where, strict=False), tool_calls=calls))
        elif isinstance(msg, SystemMessage):
            out.append(Message.system(_text(msg.content, where, strict=True)))
        elif isinstance(msg, HumanMessage):
            out.append(Message.user(_text(msg.content, where, strict=True)))
        elif isinstance(msg, ChatMessage) and msg.role in _ROLES:
            out.append(Message(_ROLES[msg.role], _text(msg.content, where, strict=True)))
        else:
            role = getattr(msg, "role", None) or msg.type
            raise ValueError(f"{where}: YandexGPT has no {role!r} messages; use system, human, ai or tool messages")
    if results:
        out.append(Message.with_tool_results(results))
    return out


def _tool_content(content: Any, where: str) -> str:
    if all(isinstance(b, str) or (isinstance(b, Mapping) and b.get("type") == "text") for b in content):
        return _text(content, where, strict=True)
    return json.dumps(content, ensure_ascii=False)


# -- results -----------------------------------------------------------------------------------


def _usage(usage: Usage) -> UsageMetadata:
    details: OutputTokenDetails = {"reasoning": usage.reasoning_tokens}
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "input_token_details": {},
        "output_token_details": details,
    }


def _metadata(result: CompletionResult, model: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "model_name": model,
        "model_provider": _PROVIDER,
        "model_version": result.model_version,
        "finish_reason": result.status.name,
    }
    if result.request_id:
        meta["request_id"] = result.request_id
    return meta


def _call_id() -> str:
    """The API gives tool calls no ids; LangChain needs one to pair each ToolMessage with its call."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _chat_result(result: CompletionResult, model: str) -> ChatResult:
    alt = result.alternative
    message = AIMessage(
        content=alt.text,
        tool_calls=[
            {"name": c.name, "args": dict(c.arguments), "id": _call_id(), "type": "tool_call"} for c in alt.tool_calls
        ],
        usage_metadata=_usage(result.usage),
        response_metadata=_metadata(result, model),
    )
    return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": model})


class _FinalText:
    """The text as it stands after each chunk (a replaced text starts over), for finish events."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text = ""

    def _see(self, chunk: ChatGenerationChunk) -> None:
        content = chunk.message.content
        delta = content if isinstance(content, str) else _text(content, "chunk", strict=False)
        self.text = delta if chunk.message.response_metadata.get("replaced") else self.text + delta

    def track(self, chunks: Iterator[ChatGenerationChunk]) -> Iterator[ChatGenerationChunk]:
        for chunk in chunks:
            self._see(chunk)
            yield chunk

    async def atrack(self, chunks: AsyncIterator[ChatGenerationChunk]) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in chunks:
            self._see(chunk)
            yield chunk

    def settle(self, event: Any) -> Any:
        if event.get("event") == "content-block-finish" and event.get("content", {}).get("type") == "text":
            return {**event, "content": {**event["content"], "text": self.text}}
        return event


class _StreamChunks:
    """Alternatives of one stream as ChatGenerationChunks; the first alternative only.

    A replaced text (a content filter swapped it) cannot be taken back by LangChain's chunk
    merging, which concatenates. So the chunks already yielded for the withdrawn text are
    emptied — LangChain merges those same objects into the final message of `invoke` with
    streaming, `stream()`'s callbacks and `generate` — and the chunk with the new text says
    `response_metadata["replaced"] = True` for those who add chunks up themselves.
    """

    __slots__ = ("model", "yielded")

    def __init__(self, model: str) -> None:
        self.model = model
        self.yielded: list[ChatGenerationChunk] = []

    def step(self, alt: Alternative) -> ChatGenerationChunk | None:
        if alt.index != 0:
            return None
        if alt.replaced:
            for old in self.yielded:
                old.message.content = "" if isinstance(old.message.content, str) else []
                old.text = ""
            self.yielded.clear()
            meta = {"replaced": True}
        elif not alt.delta:
            return None
        else:
            meta = {}
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=alt.delta, response_metadata=meta))
        self.yielded.append(chunk)
        return chunk

    def last(self, result: CompletionResult) -> ChatGenerationChunk:
        """The closing chunk: tool calls, usage and metadata, once."""
        calls = result.tool_calls
        message = AIMessageChunk(
            content="",
            tool_call_chunks=[
                tool_call_chunk(name=c.name, args=json.dumps(dict(c.arguments)), id=_call_id(), index=i)
                for i, c in enumerate(calls)
            ],
            usage_metadata=_usage(result.usage),
            response_metadata=_metadata(result, self.model),
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message)
