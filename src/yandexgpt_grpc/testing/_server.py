"""The emulator: a grpc.aio server on its own thread and event loop, plus the scripting state.

A dedicated thread keeps the server independent of the caller's event loop (sync tests,
pytest-asyncio loops and the CLI all use it the same way) and lets ``stop()`` tear everything
down deterministically by joining that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc

from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)
from yandexgpt_grpc._generated.yandex.cloud.operation import (
    operation_pb2,
    operation_service_pb2_grpc,
)

from . import _model
from ._capture import CapturedCall
from ._script import Fault, OperationScript, Reply, ScriptEntry

__all__ = ["METHODS", "Emulator"]

logger = logging.getLogger("yandexgpt_grpc.testing")

#: Short method names used by ``enqueue``, ``fail_next`` and ``CapturedCall.method``.
METHODS = (
    "Completion",
    "AsyncCompletion",
    "Tokenize",
    "TokenizeCompletion",
    "OperationGet",
    "OperationCancel",
)
_CANCELLED_CODE = 1
_T = TypeVar("_T")
ExtraService = Callable[[grpc.aio.Server, "Emulator"], None]


class _Abort(Exception):
    """Internal: end the RPC with a status (turned into ``context.abort`` in one place)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Sequence[Any] = ()) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing = tuple(trailing)


@dataclass
class _Operation:
    op: Any
    script: OperationScript
    outcome: Any  # CompletionResponse to pack when done (unless script.error)
    created: float
    polls: int = 0


class _Rpc:
    """Per-call state: the capture plus whether initial metadata went out yet."""

    def __init__(self, call: CapturedCall, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.call = call
        self.context = context
        self.initial_sent = False

    async def send_initial(self, extra: Sequence[Any] = ()) -> None:
        if not self.initial_sent:
            self.initial_sent = True
            await self.context.send_initial_metadata(
                (
                    ("x-request-id", self.call.request_id),
                    ("x-server-trace-id", self.call.trace_id),
                    *extra,
                )
            )

    async def write(self, response: Any) -> None:
        await self.send_initial()
        await self.context.write(response)
        self.call.responses_sent += 1


class Emulator:
    """A local, scriptable stand-in for the YandexGPT text-generation gRPC API.

    Serves ``TextGenerationService``, ``TextGenerationAsyncService``, ``TokenizerService`` and
    ``OperationService`` on one port (or Unix socket), answers with a deterministic default
    model, and records every call in :attr:`calls`. Tests shape the next answers with
    :meth:`enqueue` / :meth:`fail_next`; queue entries win over the default model.

    Default model. Its answer, from the request's messages (streamed in up to 4 chunks):

    * last message is a ``tool_result_list`` -> ``Tool results: <name>: <content>; ...``
    * tools declared and ``tool_choice`` names a function (that one), is ``REQUIRED`` (the tool the
      last user message names, else the first) or is unset/``AUTO`` and the last user message names
      a tool (``name(`` or every 4+ letter word of its name, e.g. "weather" for ``get_weather``)
      -> status ``TOOL_CALLS`` with one call: arguments written ``name(3, "x")`` in the message fill
      its parameters in order, quoted phrases fill its other string parameters, and the rest come
      from the ``parameters`` JSON schema (see :func:`yandexgpt_grpc.testing.sample_value`)
    * ``json_object`` -> ``{"answer": "<text>"}``, or ``{"<key>": "sample <key>", ...}`` when the last
      user message asks for quoted ``'<key>'`` names as JSON "keys"; ``json_schema`` -> a JSON object with the schema's
      required properties (all when none are required) filled with sample values by type
    * otherwise the text ``You said: "<last user text>".`` prefixed with ``[<system prompt>] `` when
      there are system messages, followed by `` This is the emulator answering.``

    The tokenizer cuts words and single punctuation marks, each with its leading whitespace, and
    gives every token the id ``zlib.crc32(text) % 100_000``. Input usage is the token count of all
    message contents, exactly what ``TokenizeCompletion`` returns. ``max_tokens`` cuts the answer to
    that many tokens with status ``TRUNCATED_FINAL``. Reasoning mode ``ENABLED_HIDDEN`` adds
    ``8 + input_tokens // 2`` reasoning tokens to the completion and total counts.

    Auth mirrors the real service: ``authorization: Api-Key <key>`` or ``Bearer <token>`` is
    required. Any non-empty credential is accepted unless ``api_keys`` or ``iam_tokens`` is
    given; then only the listed keys/tokens are (a list left as ``None`` then accepts nothing).
    :meth:`add_iam_token` / :meth:`remove_iam_token` (and the API-key twins) adjust this at run
    time, e.g. for an IAM service passed in ``extra_services``.

    Models: a model URI must be ``gpt://<folder>/<name>[/latest|/rc|/deprecated]`` (a fine-tuned
    ``.../<version>@<suffix>`` too) or ``ds://...``, and ``<name>`` one of ``models`` (default: the
    public model list, :data:`DEFAULT_MODELS`); anything else is answered ``INVALID_ARGUMENT``
    ``invalid model_uri`` like the real API does. ``models=None`` accepts any name. A message with
    empty text is refused too (``INVALID_ARGUMENT``).

    Unscripted calls (nothing queued for the method) can be slowed and made flaky for every call:
    ``latency`` seconds before the first response, ``chunk_delay`` between streamed responses, and
    ``fail_rate`` (a probability) of failing with ``fail_code``; ``seed`` makes the failures
    repeatable (the same calls in the same order fail).

    ``tls`` is ``(cert_chain_pem, private_key_pem)`` or ``(cert_chain_pem, private_key_pem,
    root_ca_pem)``; the optional third item only feeds :attr:`root_certificates`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_keys: Iterable[str] | None = None,
        iam_tokens: Iterable[str] | None = None,
        folder_id: str | None = None,
        tls: tuple[bytes, ...] | None = None,
        unix_socket: str | None = None,
        model_version: str = "emulator-1.0",
        extra_services: Iterable[ExtraService] = (),
        models: Iterable[str] | None = _model.DEFAULT_MODELS,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        fail_rate: float = 0.0,
        fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        seed: int | None = None,
    ) -> None:
        if tls is not None and len(tls) not in (2, 3):
            raise ValueError("tls must be (cert_chain_pem, private_key_pem[, root_ca_pem])")
        if isinstance(models, str):
            raise TypeError("models must be a list of model names (or None for any), not a str")
        self.models: frozenset[str] | None = None if models is None else frozenset(models)
        for name, value in (("latency", latency), ("chunk_delay", chunk_delay)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not isinstance(fail_rate, (int, float)) or isinstance(fail_rate, bool) or not 0 <= fail_rate <= 1:
            raise ValueError(f"fail_rate must be a probability within [0, 1], got {fail_rate!r}")
        if not isinstance(fail_code, grpc.StatusCode) or fail_code is grpc.StatusCode.OK:
            raise ValueError(f"fail_code must be a non-OK grpc.StatusCode, got {fail_code!r}")
        self.latency = float(latency)
        self.chunk_delay = float(chunk_delay)
        self.fail_rate = float(fail_rate)
        self.fail_code = fail_code
        self._rng = random.Random(seed)
        self.host = host
        self.folder_id = folder_id
        self.model_version = model_version
        self.tls = tls
        self.unix_socket = unix_socket
        self._requested_port = port
        # None accepts any credential of that kind; a set is an allow-list. Configuring either
        # kind in the constructor makes both strict ("only the credentials I gave").
        strict = api_keys is not None or iam_tokens is not None
        self._api_keys: set[str] | None = set(api_keys or ()) if strict else None
        self._iam_tokens: set[str] | None = set(iam_tokens or ()) if strict else None
        self._revoked: set[str] = set()
        self._extra_services = tuple(extra_services)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[ScriptEntry]] = {m: deque() for m in METHODS}
        self._calls: list[CapturedCall] = []
        self._ops: dict[str, _Operation] = {}
        self._op_sources: list[Callable[[str], Any | None]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._stopping = False
        self._port = 0

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving; returns once the port is bound (raises if binding failed)."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        ready = threading.Event()
        self._start_error = None
        self._stopping = False
        thread = threading.Thread(target=self._thread_main, args=(ready,), name="yandexgpt-emulator", daemon=True)
        thread.start()
        ready.wait()
        if self._start_error is not None:
            thread.join()
            error, self._start_error = self._start_error, None
            raise error
        self._thread = thread
        logger.info("emulator listening on %s", self.address)
        return self

    def stop(self) -> None:
        """Stop serving, cancelling in-flight calls; returns quickly and is idempotent."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        self._thread = None
        self._stopping = True
        if loop is not None and event is not None:
            # A closed loop means the thread is ending anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        thread.join(timeout=5)
        self._loop = self._stop_event = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Emulator:
        # start()/stop() block for milliseconds; a worker thread keeps the caller's loop free.
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # pragma: no cover - surfaced through start()
            if not ready.is_set():
                self._start_error = exc
                ready.set()
            else:
                logger.exception("emulator server thread crashed")

    async def _serve(self, ready: threading.Event) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            tg_grpc.add_TextGenerationServiceServicer_to_server(_TextGeneration(self), server)  # type: ignore[arg-type]
            tg_grpc.add_TextGenerationAsyncServiceServicer_to_server(_AsyncTextGeneration(self), server)  # type: ignore[arg-type]
            tg_grpc.add_TokenizerServiceServicer_to_server(_Tokenizer(self), server)  # type: ignore[arg-type]
            operation_service_pb2_grpc.add_OperationServiceServicer_to_server(_Operations(self), server)  # type: ignore[arg-type]
            for add in self._extra_services:
                add(server, self)
            target = (
                f"unix:{self.unix_socket}" if self.unix_socket else _join_host_port(self.host, self._requested_port)
            )
            if self.tls is not None:
                creds = grpc.ssl_server_credentials([(self.tls[1], self.tls[0])])
                port = server.add_secure_port(target, creds)
            else:
                port = server.add_insecure_port(target)
            if not port and not self.unix_socket:
                raise RuntimeError(f"could not bind {target}")
            self._port = 0 if self.unix_socket else port
            await server.start()
        except BaseException as exc:
            self._start_error = exc
            ready.set()
            return
        ready.set()
        await self._stop_event.wait()
        await server.stop(None)

    @property
    def address(self) -> str:
        """The gRPC target to dial, e.g. ``127.0.0.1:54321`` or ``unix:/tmp/x.sock``."""
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        return _join_host_port(self.host, self._port)

    @property
    def port(self) -> int:
        """The bound TCP port (0 for a Unix socket or before start)."""
        return self._port

    @property
    def root_certificates(self) -> bytes | None:
        """PEM a client should trust: the CA from ``tls`` when given, else its certificate."""
        if self.tls is None:
            return None
        return self.tls[2] if len(self.tls) == 3 else self.tls[0]

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._thread is not None

    # -- scripting ----------------------------------------------------------------------------

    def enqueue(self, method: str, *entries: ScriptEntry) -> None:
        """Queue scripted entries (FIFO) for ``method``; each is consumed by one call.

        Auth and request validation run first, so a rejected request does not consume an entry.
        ``Completion`` takes :class:`Reply`/:class:`Fault`; ``AsyncCompletion`` also
        :class:`OperationScript` (a ``Reply`` there shapes the operation's response); the
        unary methods honour a ``Reply``'s delay and metadata only.
        """
        self._check_method(method)
        for entry in entries:
            if isinstance(entry, OperationScript) and method != "AsyncCompletion":
                raise TypeError("OperationScript only applies to 'AsyncCompletion'")
            if not isinstance(entry, (Reply, Fault, OperationScript)):
                raise TypeError(f"expected Reply, Fault or OperationScript, got {entry!r}")
        with self._lock:
            self._queues[method].extend(entries)

    def fail_next(
        self,
        k: int,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        details: str = "emulator: injected failure",
        method: str = "Completion",
        pushback_ms: int | None = None,
    ) -> None:
        """Make the next ``k`` calls of ``method`` fail (appended to its queue), then succeed."""
        self.enqueue(method, *[Fault(code=code, details=details, pushback_ms=pushback_ms)] * k)

    def reset(self) -> None:
        """Forget queued scripts, captured calls and operations."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._calls.clear()
            self._ops.clear()

    def pending(self, method: str) -> int:
        """How many scripted entries are still queued for ``method``."""
        self._check_method(method)
        with self._lock:
            return len(self._queues[method])

    def add_api_key(self, key: str) -> None:
        """Accept ``key`` from now on; API keys become allow-listed (others refused)."""
        with self._lock:
            self._revoked.discard(key)
            self._api_keys = (self._api_keys or set()) | {key}

    def add_iam_token(self, token: str) -> None:
        """Accept IAM ``token`` from now on (e.g. one an extra IAM service issued).

        IAM tokens become allow-listed: other Bearer tokens are refused; API keys are unaffected.
        """
        with self._lock:
            self._revoked.discard(token)
            self._iam_tokens = (self._iam_tokens or set()) | {token}

    def remove_api_key(self, key: str) -> None:
        """Refuse ``key`` from now on (also in accept-any mode)."""
        with self._lock:
            self._revoked.add(key)
            if self._api_keys is not None:
                self._api_keys.discard(key)

    def remove_iam_token(self, token: str) -> None:
        """Refuse IAM ``token`` from now on, e.g. once it expired or was revoked."""
        with self._lock:
            self._revoked.add(token)
            if self._iam_tokens is not None:
                self._iam_tokens.discard(token)

    # -- capture ------------------------------------------------------------------------------

    @property
    def calls(self) -> list[CapturedCall]:
        """Every RPC so far in arrival order (a snapshot list of live capture objects)."""
        with self._lock:
            return list(self._calls)

    def calls_for(self, method: str) -> list[CapturedCall]:
        """Captured calls of one short method name."""
        self._check_method(method)
        return [c for c in self.calls if c.method == method]

    @property
    def operations(self) -> dict[str, Any]:
        """Operation id -> a copy of its current ``Operation`` message."""
        with self._lock:
            return {op_id: _copy(state.op) for op_id, state in self._ops.items()}

    def wait_for(self, predicate: Callable[[], object], timeout: float = 2.0) -> bool:
        """Poll ``predicate`` until truthy or ``timeout``; errors inside count as false."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return True
            except (IndexError, KeyError, AttributeError):
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    # -- request handling ---------------------------------------------------------------------

    def _check_method(self, method: str) -> None:
        if method not in self._queues:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")

    def _pop(self, method: str) -> ScriptEntry | None:
        """The next scripted entry, else (with ``fail_rate``) maybe a random fault, else None."""
        with self._lock:
            queue = self._queues[method]
            if queue:
                return queue.popleft()
            if self.fail_rate and self._rng.random() < self.fail_rate:
                return Fault(code=self.fail_code, details="emulator: random failure (fail_rate)", delay=self.latency)
            return None

    async def handle(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        body: Callable[[_Rpc], Awaitable[_T]],
    ) -> _T:
        """Run one RPC: capture, auth, then ``body``; records the outcome on the capture."""
        metadata = tuple((m[0], m[1]) for m in (context.invocation_metadata() or ()))
        call = CapturedCall(
            method=method,
            request=request,
            metadata=metadata,
            deadline=context.time_remaining(),
            request_id=str(uuid.uuid4()),
            trace_id=uuid.uuid4().hex,
        )
        with self._lock:
            self._calls.append(call)
        rpc = _Rpc(call, context)
        logger.info(
            "%s request_id=%s x-client-request-id=%s",
            method,
            call.request_id,
            call.client_request_id,
        )
        try:
            self._check_auth(call)
            result = await body(rpc)
        except _Abort as abort:
            self._finish(call, abort.code, abort.details)
            await rpc.send_initial()
            trailing = (
                ("x-request-id", call.request_id),
                ("x-server-trace-id", call.trace_id),
                *abort.trailing,
            )
            await context.abort(abort.code, abort.details, trailing)
            raise AssertionError("unreachable") from None  # context.abort always raises
        except asyncio.CancelledError:
            if self._stopping:
                self._finish(call, grpc.StatusCode.UNAVAILABLE, "emulator stopped")
            else:
                call.cancelled = True
                expired = call.deadline is not None and (time.monotonic() - call.started_at >= call.deadline)
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                self._finish(call, code, "cancelled by the client")
            raise
        except Exception as exc:
            logger.exception("%s request_id=%s failed", method, call.request_id)
            self._finish(call, grpc.StatusCode.UNKNOWN, f"emulator error: {exc}")
            raise
        if result is not None:  # unary methods return their single response
            call.responses_sent += 1
        self._finish(call, grpc.StatusCode.OK, None)
        return result

    def _finish(self, call: CapturedCall, code: grpc.StatusCode, details: str | None) -> None:
        call.code, call.details, call.finished_at = code, details, time.monotonic()
        logger.debug("%s request_id=%s -> %s", call.method, call.request_id, code.name)

    def _check_auth(self, call: CapturedCall) -> None:
        value = call.header("authorization")
        help_text = "send 'authorization: Api-Key <API key>' or 'authorization: Bearer <IAM token>'"
        if value is None or not value.strip():
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, f"missing authorization metadata: {help_text}")
        scheme, _, secret = value.strip().partition(" ")
        secret = secret.strip()
        scheme = scheme.lower()
        if scheme not in ("api-key", "bearer") or not secret or " " in secret:
            raise _Abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"malformed authorization metadata: {help_text}",
            )
        with self._lock:
            allowed = self._api_keys if scheme == "api-key" else self._iam_tokens
            ok = secret not in self._revoked and (allowed is None or secret in allowed)
        if ok:
            return
        if scheme == "api-key":
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "the API key is not valid")
        raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "the IAM token is not valid or has expired")

    def _validate(self, call: CapturedCall, check: Callable[[], None]) -> None:
        try:
            check()
        except _model.ValidationError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    def _validate_completion(self, call: CapturedCall) -> None:
        self._validate(
            call,
            lambda: _model.validate_request(call.request, call.header("x-folder-id"), self.folder_id, self.models),
        )

    # -- responses ----------------------------------------------------------------------------

    def _response(
        self,
        text: str,
        status: int,
        usage: Sequence[int],
        tool_calls: Sequence[Any] = (),
    ) -> Any:
        resp = tg_pb2.CompletionResponse(model_version=self.model_version)
        alt = resp.alternatives.add()
        alt.status = status  # type: ignore[assignment]
        alt.message.role = "assistant"
        if tool_calls:
            for tc in tool_calls:
                fc = alt.message.tool_call_list.tool_calls.add().function_call
                fc.name = str(tc["name"])
                fc.arguments.update(dict(tc.get("arguments") or {}))
        else:
            alt.message.text = text
        resp.usage.input_text_tokens = usage[0]
        resp.usage.completion_tokens = usage[1]
        resp.usage.total_tokens = usage[2]
        if len(usage) > 3 and usage[3]:
            resp.usage.completion_tokens_details.reasoning_tokens = usage[3]
        return resp

    def _plan(self, request: Any, reply: Reply | None) -> tuple[list[Any], Any]:
        """Partial responses (when streaming) and the terminal response for one answer."""
        answer = _model.default_answer(request)
        n_in, n_reason = answer.input_tokens, answer.reasoning_tokens
        if reply is None:
            chunks = _model.split_chunks(answer.text)
            final, status, tool_calls = answer.text, answer.status, answer.tool_calls
            usage: tuple[int, ...] | None = None
        else:
            chunks = list(reply.chunks) if reply.chunks is not None else _model.split_chunks(answer.text)
            if reply.final_text is not None:
                final = reply.final_text
            else:
                final = "".join(chunks) if reply.chunks is not None else answer.text
            status = reply.status_value
            if reply.tool_calls is not None:
                tool_calls = [dict(tc) for tc in reply.tool_calls]
            elif status == _model.TOOL_CALLS:
                tool_calls = answer.tool_calls or ([_model.tool_call_for(request.tools[0])] if request.tools else [])
            else:
                tool_calls = []
            usage = reply.usage
        partials = []
        if request.completion_options.stream:
            text = ""
            for chunk in chunks:
                text += chunk
                n_out = len(_model.token_texts(text)) + n_reason
                partials.append(self._response(text, 1, (n_in, n_out, n_in + n_out, n_reason)))
        if usage is None:
            n_out = _model.count_answer_tokens(final, tool_calls) + n_reason
            usage = (n_in, n_out, n_in + n_out, n_reason)
        return partials, self._response(final, status, usage, tool_calls)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _run_fault(self, rpc: _Rpc, fault: Fault, streaming: bool) -> None:
        """Send ``fault.after`` partials (streaming RPCs only), then stall or abort."""
        await self._sleep(fault.delay)
        if streaming and fault.after:
            chunks = list(fault.chunks) if fault.chunks is not None else None
            if not chunks:
                chunks = _model.split_chunks(_model.default_answer(rpc.call.request).text)
            chunks = chunks or ["..."]
            text = ""
            for i in range(fault.after):
                if i:
                    await self._sleep(fault.between)
                text += chunks[i % len(chunks)]
                await rpc.write(self._response(text, 1, (0, 0, 0)))
            await self._sleep(fault.between)
        if fault.stall:
            await rpc.send_initial()
            await asyncio.Event().wait()  # ends only by cancellation (client, deadline, stop)
        trailing: list[tuple[str, str | bytes]] = list(fault.trailing_metadata)
        if fault.pushback_ms is not None:
            trailing.append(("grpc-retry-pushback-ms", str(int(fault.pushback_ms))))
        if fault.status_details is not None:
            trailing.append(("grpc-status-details-bin", _status_details_bytes(fault)))
        raise _Abort(fault.code, fault.details, trailing)

    async def _apply_reply_envelope(self, rpc: _Rpc, entry: ScriptEntry | None) -> None:
        """For unary methods: honour a Reply's delay and metadata, or run a Fault."""
        if entry is None:
            await self._sleep(self.latency)
        elif isinstance(entry, Fault):
            await self._run_fault(rpc, entry, streaming=False)
        elif isinstance(entry, Reply):
            await self._sleep(entry.delay)
            await rpc.send_initial(entry.initial_metadata)
            if entry.trailing_metadata:
                rpc.context.set_trailing_metadata(tuple(entry.trailing_metadata))

    # -- method bodies --------------------------------------------------------------------------

    async def completion(self, rpc: _Rpc) -> None:
        """``TextGenerationService.Completion`` (server streaming)."""
        self._validate_completion(rpc.call)
        entry = self._pop("Completion")
        if isinstance(entry, Fault):
            await self._run_fault(rpc, entry, streaming=True)
        reply = entry if isinstance(entry, Reply) else None
        partials, terminal = self._plan(rpc.call.request, reply)
        responses = partials + ([terminal] if reply is None or reply.terminal else [])
        between = self.chunk_delay
        if reply is not None:
            between = reply.between
            await self._sleep(reply.delay)
            await rpc.send_initial(reply.initial_metadata)
            if reply.trailing_metadata:
                rpc.context.set_trailing_metadata(tuple(reply.trailing_metadata))
        else:
            await self._sleep(self.latency)
        for i, response in enumerate(responses):
            if i:
                await self._sleep(between)
            await rpc.write(response)
        await rpc.send_initial()

    async def async_completion(self, rpc: _Rpc) -> Any:
        """``TextGenerationAsyncService.Completion``: create an operation per the script."""
        self._validate_completion(rpc.call)
        entry = self._pop("AsyncCompletion")
        script = OperationScript()
        if isinstance(entry, OperationScript):
            script = entry
        else:
            await self._apply_reply_envelope(rpc, entry)
            if isinstance(entry, Reply):
                script = OperationScript(response=entry)
        request = _copy(rpc.call.request)
        request.completion_options.stream = False
        _, outcome = self._plan(request, script.response)
        op = operation_pb2.Operation(
            id="emu" + uuid.uuid4().hex[:17],
            description=script.description,
            created_by="emulator",
            done=False,
        )
        op.created_at.GetCurrentTime()
        op.modified_at.CopyFrom(op.created_at)
        state = _Operation(op=op, script=script, outcome=outcome, created=time.monotonic())
        self._maybe_finish(state)
        with self._lock:
            self._ops[op.id] = state
            result = _copy(op)
        await rpc.send_initial()
        return result

    def _maybe_finish(self, state: _Operation) -> None:
        if state.op.done:
            return
        script = state.script
        if script.done_after_seconds is not None:
            due = time.monotonic() - state.created >= script.done_after_seconds
        else:
            due = state.polls >= script.done_after_polls
        if not due:
            return
        state.op.done = True
        if script.error is not None:
            code, message = script.error
            state.op.error.code = code.value[0] if isinstance(code, grpc.StatusCode) else int(code)
            state.op.error.message = message
        else:
            state.op.response.Pack(state.outcome)
        state.op.modified_at.GetCurrentTime()

    def add_operation_source(self, source: Callable[[str], Any | None]) -> None:
        """Let an extra service answer ``OperationService.Get`` for its own operations.

        ``source(operation_id)`` returns the current ``Operation`` message, or None when the id
        is not its own.
        """
        with self._lock:
            self._op_sources.append(source)

    def _extra_op(self, op_id: str) -> Any | None:
        with self._lock:
            sources = list(self._op_sources)
        for source in sources:
            op = source(op_id)
            if op is not None:
                return op
        return None

    def _find_op(self, op_id: str) -> _Operation:
        state = self._ops.get(op_id)
        if state is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"operation {op_id!r} not found")
        return state

    async def operation_get(self, rpc: _Rpc) -> Any:
        """``OperationService.Get``: one poll; the operation may become done."""
        await self._apply_reply_envelope(rpc, self._pop("OperationGet"))
        extra = self._extra_op(rpc.call.request.operation_id)
        if extra is not None:
            await rpc.send_initial()
            return extra
        with self._lock:
            state = self._find_op(rpc.call.request.operation_id)
            state.polls += 1
            self._maybe_finish(state)
            result = _copy(state.op)
        await rpc.send_initial()
        return result

    async def operation_cancel(self, rpc: _Rpc) -> Any:
        """``OperationService.Cancel``: a pending operation ends with error CANCELLED."""
        await self._apply_reply_envelope(rpc, self._pop("OperationCancel"))
        with self._lock:
            state = self._find_op(rpc.call.request.operation_id)
            if not state.op.done:
                state.op.done = True
                state.op.error.code = _CANCELLED_CODE
                state.op.error.message = "operation cancelled"
                state.op.modified_at.GetCurrentTime()
            result = _copy(state.op)
        await rpc.send_initial()
        return result

    async def tokenize(self, rpc: _Rpc) -> Any:
        """``TokenizerService.Tokenize``: the default model's tokens of ``text``."""
        request = rpc.call.request
        self._validate(
            rpc.call,
            lambda: _model.validate_model_uri(
                request.model_uri, rpc.call.header("x-folder-id"), self.folder_id, self.models
            ),
        )
        await self._apply_reply_envelope(rpc, self._pop("Tokenize"))
        await rpc.send_initial()
        return self._tokens_response([request.text])

    async def tokenize_completion(self, rpc: _Rpc) -> Any:
        """``TokenizerService.TokenizeCompletion``: tokens of all messages, as usage counts."""
        self._validate_completion(rpc.call)
        await self._apply_reply_envelope(rpc, self._pop("TokenizeCompletion"))
        await rpc.send_initial()
        return self._tokens_response(_model.input_texts(rpc.call.request))

    def _tokens_response(self, texts: Iterable[str]) -> Any:
        resp = tg_pb2.TokenizeResponse(model_version=self.model_version)
        for text in texts:
            for token_id, token_text in _model.tokenize(text):
                resp.tokens.add(id=token_id, text=token_text)
        return resp


def _copy(message: _T) -> _T:
    clone = type(message)()
    clone.CopyFrom(message)  # type: ignore[attr-defined]
    return clone


def _join_host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _status_details_bytes(fault: Fault) -> bytes:
    """Serialise ``fault.status_details`` as a google.rpc.Status matching the fault's code."""
    details = fault.status_details
    if isinstance(details, bytes):
        return details
    from google.rpc import status_pb2

    status = status_pb2.Status()
    status.MergeFromString(details.SerializeToString())
    status.code = fault.code.value[0]
    status.message = fault.details
    return bytes(status.SerializeToString())


class _Servicer:
    """One service's servicer: each method hands its RPC to `Emulator.handle` under the name it is captured as."""

    def __init__(self, emu: Emulator) -> None:
        self._emu = emu


class _TextGeneration(_Servicer):
    async def Completion(self, request: Any, context: Any) -> None:
        await self._emu.handle("Completion", request, context, self._emu.completion)


class _AsyncTextGeneration(_Servicer):
    async def Completion(self, request: Any, context: Any) -> Any:
        return await self._emu.handle("AsyncCompletion", request, context, self._emu.async_completion)


class _Tokenizer(_Servicer):
    async def Tokenize(self, request: Any, context: Any) -> Any:
        return await self._emu.handle("Tokenize", request, context, self._emu.tokenize)

    async def TokenizeCompletion(self, request: Any, context: Any) -> Any:
        return await self._emu.handle("TokenizeCompletion", request, context, self._emu.tokenize_completion)


class _Operations(_Servicer):
    async def Get(self, request: Any, context: Any) -> Any:
        return await self._emu.handle("OperationGet", request, context, self._emu.operation_get)

    async def Cancel(self, request: Any, context: Any) -> Any:
        return await self._emu.handle("OperationCancel", request, context, self._emu.operation_cancel)
