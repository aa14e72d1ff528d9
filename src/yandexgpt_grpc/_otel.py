"""The OpenTelemetry side of `yandexgpt_grpc.otel`: GenAI spans and metrics for every logical call.

Imported only by `instrument()`. The call path reaches it through `_retry._hooks` (one test per
call) and, once a call has a span, through its `CallRetry.span`; so an uninstrumented client never
loads it, and a stream still ends its span after `uninstrument()`.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider, get_meter, get_meter_provider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from . import _retry
from ._convert import model_uri, usage_of
from ._errors import rpc_code
from ._net import split_host
from ._version import __version__

_UnsetMeterProvider: Any
try:  # the global meter provider before any is set; private, so its absence only costs the shortcut
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _UnsetMeterProvider
except ImportError:  # pragma: no cover - depends on the opentelemetry-api version
    _UnsetMeterProvider = None

if TYPE_CHECKING:
    from ._base import ClientConfig
    from ._batch import BatchSummary
    from ._operations import AsyncOperation, Operation
    from ._retry import CallRetry
    from ._streaming import _StreamState
    from ._types import Alternative, CompletionResult

# Not among the conventions' well-known gen_ai.provider.name values, which allow a custom one.
PROVIDER = "yandex"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# The explicit bucket boundaries the GenAI metric conventions advise.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# The driver's method name -> gen_ai.operation.name: "chat" is the conventions' own; the others name
# what this API does that the conventions have no word for (README, "OpenTelemetry").
OPERATIONS: Mapping[str, str] = {
    "Completion": "chat",
    "Completion(stream)": "chat",
    "TextGenerationAsyncService.Completion": "submit",
    "TokenizerService.Tokenize": "tokenize",
    "TokenizerService.TokenizeCompletion": "tokenize",
    "OperationService.Get": "poll",
    "OperationService.Cancel": "cancel",
}
_ON_OPERATION_ENDPOINT = frozenset({"OperationService.Get", "OperationService.Cancel"})
_METRIC_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
)

# Set while an operation's wait() runs: its polls are part of it (their retries become its events).
_waiting: contextvars.ContextVar[CallSpan | None] = contextvars.ContextVar("yandexgpt_grpc_otel_wait", default=None)


def capture_content() -> bool:
    """Whether prompts and answers may go into telemetry: only when the environment says so, at each call."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"


def server_address(endpoint: str) -> tuple[str, int | None]:
    """server.address and server.port of a grpc target (no port for a Unix socket)."""
    if endpoint.startswith(("unix:", "unix-abstract:")):
        return endpoint, None
    target = endpoint.split("///", 1)[-1] if endpoint.startswith("dns:") else endpoint
    port = ""
    if target.startswith("["):
        port = target[target.find("]") + 2 :]
    elif target.count(":") == 1:
        port = target.rsplit(":", 1)[1]
    return split_host(endpoint), int(port) if port.isdigit() else None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def input_messages(request: Any) -> str | None:
    """gen_ai.input.messages of a request (the conventions' JSON form), or None if it has none."""
    messages = getattr(request, "messages", None)
    if messages is None:
        text = getattr(request, "text", None)  # TokenizeRequest
        if text is None:
            return None
        return _json([{"role": "user", "parts": [{"type": "text", "content": text}]}])
    out = []
    for msg in messages:
        which = msg.WhichOneof("Content")
        parts: list[dict[str, Any]] = []
        if which == "text":
            parts.append({"type": "text", "content": msg.text})
        elif which == "tool_call_list":
            for call in msg.tool_call_list.tool_calls:
                fn = call.function_call
                parts.append(
                    {"type": "tool_call", "name": fn.name, "arguments": json_format.MessageToDict(fn.arguments)}
                )
        elif which == "tool_result_list":
            for result in msg.tool_result_list.tool_results:
                fr = result.function_result
                parts.append({"type": "tool_call_response", "name": fr.name, "response": fr.content})
        out.append({"role": msg.role, "parts": parts})
    return _json(out)


def output_messages(alternatives: Sequence[Alternative]) -> str:
    """gen_ai.output.messages: one assistant message per alternative, with its finish reason."""
    out = []
    for alt in alternatives:
        parts: list[dict[str, Any]] = []
        if alt.text:
            parts.append({"type": "text", "content": alt.text})
        parts.extend({"type": "tool_call", "name": c.name, "arguments": dict(c.arguments)} for c in alt.tool_calls)
        out.append({"role": "assistant", "parts": parts, "finish_reason": alt.status.name.lower()})
    return _json(out)


class CallSpan:
    """One logical call's span and its measurements; every way of ending it ends it once.

    A blocking stream may be closed from one thread while another reads it, so ending is claimed
    under a lock: the first way wins, the others do nothing.
    """

    __slots__ = ("attrs", "capture", "ended", "hooks", "lock", "span", "started", "token")

    def __init__(self, hooks: Telemetry, span: Any, attrs: dict[str, Any], capture: bool) -> None:
        self.hooks = hooks
        self.span = span
        self.attrs = attrs
        self.capture = capture
        self.started = time.perf_counter()
        self.ended = False
        self.lock = threading.Lock()
        self.token: object = None

    def activate(self) -> None:
        """Make the span current (children nest under it) until `deactivate()`, in this context."""
        self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def deactivate(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def set(self, key: str, value: Any) -> None:
        self.attrs[key] = value
        self.span.set_attribute(key, value)

    # -- the driver's callbacks ------------------------------------------------------------------

    def retrying(self, tries: CallRetry, exc: Any, delay: float, timed_out: bool) -> None:
        """A failed attempt that will be retried: an event with its number, code and the wait."""
        code = rpc_code(exc) if exc is not None and not timed_out else None
        self.span.add_event(
            "retry",
            {
                "yandexgpt.retry.attempt": tries.attempt,
                "yandexgpt.retry.code": code.name if code is not None else "DEADLINE_EXCEEDED",
                "rpc.grpc.status_code": code.value[0] if code is not None else 4,
                "yandexgpt.retry.delay": float(delay),
            },
        )

    def answered(self, tries: CallRetry, result: Any) -> None:
        """What the driver returned, by method; a stream's span stays open until the stream ends."""
        method = tries.method
        if tries.stream:
            return
        if method == "Completion":
            self.completed(result)
            return
        pb = result[0]
        if method == "TextGenerationAsyncService.Completion":
            self.set("yandexgpt.operation.id", pb.id)
        elif method.startswith("TokenizerService."):
            if pb.model_version:
                self.set("gen_ai.response.model", pb.model_version)
            self.set("yandexgpt.tokenize.tokens", len(pb.tokens))
        elif method in _ON_OPERATION_ENDPOINT:
            self.set("yandexgpt.operation.done", bool(pb.done))
        self.end()

    def completed(self, result: CompletionResult) -> None:
        if self._claim():
            usage = result.usage
            self._answer(result.model_version, result.alternatives, usage.input_tokens, usage.completion_tokens)
            self._finish()

    def _answer(self, version: str, alts: Sequence[Alternative], input_tokens: int, output_tokens: int) -> None:
        if version:
            self.set("gen_ai.response.model", version)
        if alts:
            self.set("gen_ai.response.finish_reasons", [alt.status.name.lower() for alt in alts])
        self.span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        self.span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        metric = self._metric_attrs()
        record = self.hooks.tokens.record
        record(input_tokens, {**metric, "gen_ai.token.type": "input"})
        record(output_tokens, {**metric, "gen_ai.token.type": "output"})
        if self.capture and alts:
            self.span.set_attribute("gen_ai.output.messages", output_messages(alts))

    def _streamed(self, state: _StreamState) -> None:
        """What a stream has received so far (all of it, or the partial of one that stopped early)."""
        last = state._last
        if last is None:
            return
        alts = state._alts
        usage = usage_of(last.usage)
        self._answer(last.model_version, [alts[i] for i in sorted(alts)], usage.input_tokens, usage.completion_tokens)

    def stream_ended(self, state: _StreamState) -> None:
        if self._claim():
            self._streamed(state)
            self._finish()

    def stream_failed(self, state: _StreamState, error: BaseException) -> None:
        """Failed mid-way (or ended without a final answer): the error, and the partial kept."""
        if self._claim():
            self._streamed(state)
            self._finish(error)

    def stream_closed(self, state: _StreamState, abandoned: bool = False) -> None:
        """Closed (or garbage-collected) before its end: not an error; what arrived is recorded."""
        if self._claim():
            self._streamed(state)
            self.span.set_attribute("yandexgpt.stream.stopped", "abandoned" if abandoned else "closed")
            self._finish()

    def batch_ended(self, summary: BatchSummary, failure: BaseException | None) -> None:
        self.deactivate()
        for key in ("total", "skipped", "succeeded", "failed"):
            self.span.set_attribute(f"yandexgpt.batch.{key}", getattr(summary, key))
        self.span.set_attribute("yandexgpt.batch.problems", len(summary.problems))
        self.end(failure)

    def _metric_attrs(self) -> dict[str, Any]:
        attrs = self.attrs
        return {key: attrs[key] for key in _METRIC_KEYS if key in attrs}

    def _claim(self) -> bool:
        with self.lock:
            if self.ended:
                return False
            self.ended = True
            return True

    def end(self, error: BaseException | None = None) -> None:
        if self._claim():
            self._finish(error)

    def _finish(self, error: BaseException | None = None) -> None:
        span = self.span
        metric = self._metric_attrs()
        if error is not None:
            kind = type(error).__name__
            metric["error.type"] = kind
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {error}"))
        self.hooks.duration.record(time.perf_counter() - self.started, metric)
        span.end()


class _Off:
    """A call's span while no SDK is configured: the driver's callbacks do nothing."""

    __slots__ = ()

    def retrying(self, *args: Any) -> None:
        pass

    def stream_ended(self, *args: Any) -> None:
        pass

    def stream_failed(self, *args: Any) -> None:
        pass

    def stream_closed(self, *args: Any, **kwargs: Any) -> None:
        pass


OFF = _Off()


def _sdk_configured() -> bool:
    """Whether a global tracer or meter provider has been set (before that both are no-ops).

    Asking the getters also loads providers named by OTEL_PYTHON_TRACER_PROVIDER and the like.
    """
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    return _UnsetMeterProvider is None or not isinstance(get_meter_provider(), _UnsetMeterProvider)


def _set_once_flags() -> tuple[Any, Any] | None:
    """The API's own "global provider set" flags: private, so None when they are not as expected."""
    try:
        from opentelemetry.metrics import _internal as metrics_internal

        flags = (trace._TRACER_PROVIDER_SET_ONCE, metrics_internal._METER_PROVIDER_SET_ONCE)
    except (ImportError, AttributeError):  # pragma: no cover - depends on the opentelemetry-api version
        return None
    return flags if all(isinstance(getattr(flag, "_done", None), bool) for flag in flags) else None


_FLAGS = _set_once_flags()


def _sdk_set_since() -> bool:
    """`_sdk_configured()` for each call after instrument(): two attribute reads instead of two getters
    that look at os.environ (a few microseconds a call) when the flags are there."""
    if _FLAGS is None:  # pragma: no cover - depends on the opentelemetry-api version
        return _sdk_configured()
    return bool(_FLAGS[0]._done or _FLAGS[1]._done)


class Telemetry:
    """The hooks `_retry._hooks` holds while instrumented: a tracer and the two GenAI histograms.

    Instrumented with the global providers before any SDK set them, a call records nothing and
    builds nothing (it asks again each call, so an SDK configured later is picked up).
    """

    def __init__(self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
        self.live = tracer_provider is not None or meter_provider is not None or _sdk_configured()
        self.tracer = trace.get_tracer("yandexgpt_grpc", __version__, tracer_provider)
        meter = get_meter("yandexgpt_grpc", __version__, meter_provider)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._addresses: dict[str, tuple[str, int | None]] = {}

    def open(
        self,
        operation: str,
        model: str | None,
        endpoint: str,
        attrs: dict[str, Any] | None = None,
        kind: SpanKind = SpanKind.CLIENT,
    ) -> CallSpan:
        """Start a span "{operation} {model}" (just the operation when the model is unknown)."""
        address = self._addresses.get(endpoint)
        if address is None:
            address = self._addresses[endpoint] = server_address(endpoint)
        all_attrs: dict[str, Any] = {"gen_ai.operation.name": operation, "gen_ai.provider.name": PROVIDER}
        if model:
            all_attrs["gen_ai.request.model"] = model
        all_attrs["server.address"] = address[0]
        if address[1] is not None:
            all_attrs["server.port"] = address[1]
        if attrs:
            all_attrs.update(attrs)
        name = f"{operation} {model}" if model else operation
        span = self.tracer.start_span(name, kind=kind, attributes=all_attrs)
        return CallSpan(self, span, all_attrs, capture_content())

    def _enter(self, tries: CallRetry, request: Any) -> tuple[CallSpan, bool]:
        """The span of a call starting in the driver, and whether it is the call's own to end."""
        method = tries.method
        outer = _waiting.get()
        if outer is not None and method in _ON_OPERATION_ENDPOINT:
            return outer, False
        cfg = tries.config
        assert cfg is not None
        endpoint = cfg.operation_endpoint if method in _ON_OPERATION_ENDPOINT else cfg.endpoint
        attrs: dict[str, Any] = {}
        if tries.operation_id:
            attrs["yandexgpt.operation.id"] = tries.operation_id
        opts = getattr(request, "completion_options", None)
        if opts is not None:
            if opts.HasField("temperature"):
                attrs["gen_ai.request.temperature"] = opts.temperature.value
            if opts.HasField("max_tokens"):
                attrs["gen_ai.request.max_tokens"] = opts.max_tokens.value
        model = getattr(request, "model_uri", None) or None
        span = self.open(OPERATIONS.get(method, method), model, endpoint, attrs)
        if span.capture:
            messages = input_messages(request)
            if messages is not None:
                span.span.set_attribute("gen_ai.input.messages", messages)
        return span, True

    def _off(self) -> bool:
        if self.live:
            return False
        self.live = _sdk_set_since()
        return not self.live

    def call(
        self,
        tries: CallRetry,
        attempt: Callable[..., Any],
        request: Any,
        before: Callable[[], object] | None,
        on_error: Callable[[Any], object] | None,
    ) -> Any:
        if self._off():
            tries.span = OFF
            return _retry.call(tries, attempt, request, before, on_error)
        span, own = self._enter(tries, request)
        tries.span = span
        if not own:
            return _retry.call(tries, attempt, request, before, on_error)
        span.activate()
        try:
            result = _retry.call(tries, attempt, request, before, on_error)
        except BaseException as exc:
            span.end(exc)
            raise
        finally:
            span.deactivate()
        span.answered(tries, result)
        return result

    async def acall(
        self,
        tries: CallRetry,
        attempt: Callable[..., Awaitable[Any]],
        request: Any,
        before: Callable[[], Awaitable[object]] | None,
        on_error: Callable[[Any], object] | None,
    ) -> Any:
        if self._off():
            tries.span = OFF
            return await _retry.acall(tries, attempt, request, before, on_error)
        span, own = self._enter(tries, request)
        tries.span = span
        if not own:
            return await _retry.acall(tries, attempt, request, before, on_error)
        span.activate()
        try:
            result = await _retry.acall(tries, attempt, request, before, on_error)
        except BaseException as exc:
            span.end(exc)
            raise
        finally:
            span.deactivate()
        span.answered(tries, result)
        return result

    def _wait_span(self, op: Operation | AsyncOperation) -> CallSpan:
        cfg = op._cfg
        return self.open("wait", None, cfg.operation_endpoint, {"yandexgpt.operation.id": op.id})

    def wait(self, op: Operation, body: Callable[[float | None, float], CompletionResult], *args: Any) -> Any:
        """Operation.wait() as one span; its polls' retries are its events."""
        if self._off():
            return body(*args)
        span = self._wait_span(op)
        token = _waiting.set(span)
        span.activate()
        try:
            result = body(*args)
        except BaseException as exc:
            span.end(exc)
            raise
        finally:
            span.deactivate()
            _waiting.reset(token)
        span.completed(result)
        return result

    async def await_(
        self, op: AsyncOperation, body: Callable[[float | None, float], Awaitable[CompletionResult]], *args: Any
    ) -> Any:
        """AsyncOperation.wait() as one span; its polls' retries are its events."""
        if self._off():
            return await body(*args)
        span = self._wait_span(op)
        token = _waiting.set(span)
        span.activate()
        try:
            result = await body(*args)
        except BaseException as exc:
            span.end(exc)
            raise
        finally:
            span.deactivate()
            _waiting.reset(token)
        span.completed(result)
        return result

    def batch(self, cfg: ClientConfig, model: str | None, requests: int) -> CallSpan | None:
        """A batch run's span, current from now until `batch_ended` (its requests' spans are children)."""
        if self._off():
            return None
        uri = None
        if model:
            try:
                uri = model_uri(model, cfg.folder_id)
            except (TypeError, ValueError):
                uri = None
        span = self.open("batch", uri, cfg.endpoint, {"yandexgpt.batch.requests": requests}, SpanKind.INTERNAL)
        span.activate()
        return span
