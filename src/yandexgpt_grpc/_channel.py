"""Channels and the transport's call shapes: options, TLS, and Completion called as a unary RPC."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, overload

import grpc
from google.protobuf.message import DecodeError

from ._checks import check_metadata_pairs
from ._constants import MAX_MESSAGE_BYTES, USER_AGENT
from ._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)

if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    from grpc import _CallIterator  # typeshed's name for what a blocking server-streaming call returns

    from ._base import ClientConfig

    # The transport's call shapes, in the stubs' types (checked only; nothing here exists at run time).
    CompletionCall: TypeAlias = _CallIterator[tg_pb2.CompletionResponse]
    AsyncCompletionCall: TypeAlias = grpc.aio.UnaryStreamCall[tg_pb2.CompletionRequest, tg_pb2.CompletionResponse]
    CompletionOnce: TypeAlias = grpc.aio.UnaryUnaryMultiCallable[
        tg_pb2.CompletionRequest, "tg_pb2.CompletionResponse | Unparsable"
    ]
    # Metadata as grpc hands it over: a tuple of pairs (blocking) or a grpc.aio Metadata.
    Headers: TypeAlias = tuple[tuple[str, str | bytes], ...] | grpc.aio.Metadata

ChannelOptions = Sequence[tuple[str, object]]

# grpc matches this exact key (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream's value).
_SINGLE_THREADED_UNARY_STREAM = "SingleThreadedUnaryStream"


def build_channel_options(user: ChannelOptions | None, sync: bool) -> list[tuple[str, object]]:
    opts: dict[str, object] = {
        "grpc.primary_user_agent": USER_AGENT,
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        # Five minutes matches grpc servers' default ping policy; faster pings get
        # the connection closed with "too many pings".
        "grpc.keepalive_time_ms": 300_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.keepalive_permit_without_calls": 0,
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


_COMPLETION_PATH = "/yandex.cloud.ai.foundation_models.v1.TextGenerationService/Completion"
# What grpc's blocking API says when it fails a call over a response it cannot parse.
UNPARSABLE_DETAILS = "Exception deserializing response!"


class Unparsable(enum.Enum):
    """The type of UNPARSABLE (an enum member, so `resp is UNPARSABLE` narrows the type)."""

    UNPARSABLE = "unparsable"


UNPARSABLE: Final = Unparsable.UNPARSABLE


def _parse_completion(data: bytes) -> tg_pb2.CompletionResponse | Unparsable:
    """CompletionResponse.FromString, but a response that does not parse comes back as UNPARSABLE.

    grpc.aio hands over None both for that and for an answer without a message; this tells them apart.
    """
    try:
        return tg_pb2.CompletionResponse.FromString(data)
    except DecodeError:
        return UNPARSABLE


def unparsable_error(initial: grpc.aio.Metadata) -> grpc.aio.AioRpcError:
    """The INTERNAL failure the blocking API raises for an unparsable response, for grpc.aio calls."""
    return grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, initial, grpc.aio.Metadata(), UNPARSABLE_DETAILS)


def completion_once(channel: grpc.aio.Channel) -> CompletionOnce:
    """Completion called as a unary RPC: one request, one response, one await.

    The method is server-streaming, but with `stream=false` the server sends exactly one
    response, and the wire cannot tell the two apart. A unary call skips the streaming
    reader's per-message bookkeeping (about 5 % of an asyncio call on loopback).
    """
    return channel.unary_unary(
        _COMPLETION_PATH,
        request_serializer=tg_pb2.CompletionRequest.SerializeToString,
        response_deserializer=_parse_completion,
    )


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
