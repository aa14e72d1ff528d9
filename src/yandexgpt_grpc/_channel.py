"""Channels: options (the dead-connection defaults among them), TLS, and the errors grpc.aio leaves to us."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

import grpc

from ._checks import check_metadata_pairs
from ._constants import MAX_MESSAGE_BYTES, USER_AGENT
from ._errors import CHANNEL_CLOSED, APIError, from_rpc_error

if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    from grpc import _CallIterator  # typeshed's name for what a blocking server-streaming call returns

    from ._base import ClientConfig
    from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )

    # The transport's call shapes, in the stubs' types (checked only; nothing here exists at run time).
    CompletionCall: TypeAlias = _CallIterator[tg_pb2.CompletionResponse]
    AsyncCompletionCall: TypeAlias = grpc.aio.UnaryStreamCall[tg_pb2.CompletionRequest, tg_pb2.CompletionResponse]
    # Metadata as grpc hands it over: a tuple of pairs (blocking) or a grpc.aio Metadata.
    Headers: TypeAlias = tuple[tuple[str, str | bytes], ...] | grpc.aio.Metadata

ChannelOptions = Sequence[tuple[str, object]]

# How long a silent connection (an unanswered ping, an unfinished handshake) is given before
# grpc drops it and reconnects; README "Reliability" quotes it.
DEAD_PATH_MS = 2_000

# grpc matches this exact key (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream's value).
_SINGLE_THREADED_UNARY_STREAM = "SingleThreadedUnaryStream"


def build_channel_options(user: ChannelOptions | None, sync: bool) -> list[tuple[str, object]]:
    opts: dict[str, object] = {
        "grpc.primary_user_agent": USER_AGENT,
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        # A dead path (socket open, no bytes) is found by a ping that goes unanswered: grpc pings
        # after DEAD_PATH_MS without a byte from the server and drops the connection when the
        # ack is DEAD_PATH_MS late (any ping: grpc's own 60 s default for the others), so the
        # next call or retry reconnects. A server with grpc's default policy accepts this: the
        # client sends at most two pings until it sends something itself (grpc's default
        # grpc.http2.max_pings_without_data), and two pings are within the server's allowance.
        "grpc.keepalive_time_ms": DEAD_PATH_MS,
        "grpc.keepalive_timeout_ms": DEAD_PATH_MS,
        "grpc.keepalive_permit_without_calls": 0,
        "grpc.http2.ping_timeout_ms": DEAD_PATH_MS,
        # A server that accepts TCP but never finishes the HTTP/2 handshake: give up on that
        # connection attempt after DEAD_PATH_MS (grpc: 20 s) and try again.
        "grpc.min_reconnect_backoff_ms": DEAD_PATH_MS,
        # Each client gets its own connections: a new Client never inherits one already dead.
        "grpc.use_local_subchannel_pool": 1,
        # Let grpc retry transparently only what never reached the server.
        "grpc.enable_retries": 1,
        # Reconnect soon after a server comes back (grpc's defaults: 1 s growing to 120 s),
        # so a restarted endpoint serves the same client again within our retry window.
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": 10_000,
    }
    if sync:
        # Reads stream messages on the caller's thread: no hop through grpc's
        # polling thread per message (about a quarter less CPU per message).
        opts[_SINGLE_THREADED_UNARY_STREAM] = 1
    for key, value in check_metadata_pairs("channel_options", user) if user is not None else ():
        opts[key] = value
    return list(opts.items())


# What grpc's blocking API says when it fails a call over a response it cannot parse.
UNPARSABLE_DETAILS = "Exception deserializing response!"


def unparsable_error(initial: grpc.aio.Metadata) -> grpc.aio.AioRpcError:
    """The INTERNAL failure the blocking API raises for an unparsable response, for grpc.aio calls."""
    return grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, initial, grpc.aio.Metadata(), UNPARSABLE_DETAILS)


def closed_error() -> grpc.aio.AioRpcError:
    """The CANCELLED failure the blocking API raises in calls its channel's close() cut short.

    grpc.aio raises asyncio.CancelledError in them instead, which makes the task look cancelled.
    """
    return grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), CHANNEL_CLOSED)


def task_cancelled() -> bool:
    """Whether the current task has been asked to cancel (not just handed a CancelledError by grpc).

    Python 3.10 cannot tell; there a closed client is taken as the reason.
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def closed_client_error(client_closed: bool, attempt: int) -> APIError | None:
    """The error for a CancelledError grpc.aio raised because the client closed under the call; None for
    a cancelled task (which must see its CancelledError)."""
    if client_closed and not task_cancelled():
        return from_rpc_error(closed_error(), attempts=attempt)
    return None


@overload
def open_channel(cfg: ClientConfig, target: str, *, aio: Literal[False]) -> grpc.Channel: ...
@overload
def open_channel(cfg: ClientConfig, target: str, *, aio: Literal[True]) -> grpc.aio.Channel: ...
def open_channel(cfg: ClientConfig, target: str, *, aio: bool) -> grpc.Channel | grpc.aio.Channel:
    """A channel to `target` under the client's rules: TLS unless insecure (loopback only, checked)."""
    if cfg.insecure:
        return (grpc.aio.insecure_channel if aio else grpc.insecure_channel)(target, options=cfg.options)
    creds = grpc.ssl_channel_credentials(root_certificates=cfg.root_certificates)
    return (grpc.aio.secure_channel if aio else grpc.secure_channel)(target, creds, options=cfg.options)
