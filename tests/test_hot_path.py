"""Behaviour the hot-path trims must keep: request ids, lazy package attributes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

import yandexgpt_grpc
from yandexgpt_grpc._base import new_request_id


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in ids:
        u = uuid.UUID(rid)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == rid


def test_every_public_name_resolves() -> None:
    for name in yandexgpt_grpc.__all__:
        assert getattr(yandexgpt_grpc, name) is not None
        assert name in dir(yandexgpt_grpc)
    assert yandexgpt_grpc.Client.__module__ == "yandexgpt_grpc._client"


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        yandexgpt_grpc.no_such_name  # noqa: B018


def test_plain_import_defers_the_generated_stubs() -> None:
    code = (
        "import sys, yandexgpt_grpc; "
        "assert not [m for m in sys.modules if '_generated' in m], sorted(sys.modules); "
        "from yandexgpt_grpc import Client; "
        "assert 'yandexgpt_grpc._client' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fast_alternative_equals_the_dataclass() -> None:
    import dataclasses

    from yandexgpt_grpc import Alternative, AlternativeStatus, ToolCall
    from yandexgpt_grpc._types import make_alternative

    args = ("abc", "c", AlternativeStatus.TOOL_CALLS, 2, True, (ToolCall("f", {"x": 1}),))
    fast, slow = make_alternative(*args), Alternative(*args)
    assert fast == slow and repr(fast) == repr(slow)
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.text = "changed"  # type: ignore[misc]


async def test_async_unary_without_a_response_is_incomplete(emu: object) -> None:
    """complete() uses a unary RPC; a server that answers OK with no message is still reported."""
    from yandexgpt_grpc import AsyncClient, IncompleteStreamError
    from yandexgpt_grpc.testing import Emulator, Reply

    assert isinstance(emu, Emulator)
    emu.enqueue("Completion", Reply(chunks=["a"], terminal=False))
    async with AsyncClient(emu.address, insecure=True, api_key="k", folder_id="b1g") as client:
        with pytest.raises(IncompleteStreamError, match="without a response"):
            await client.complete("yandexgpt-lite", "hi")
