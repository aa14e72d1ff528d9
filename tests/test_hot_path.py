"""Behaviour the hot-path trims must keep: request ids, lazy package attributes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import yandexgpt_grpc
from yandexgpt_grpc._base import new_request_id


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in ids:
        u = uuid.UUID(rid)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == rid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_request_ids_differ_in_a_forked_child() -> None:
    """Ids come from `random`, which must not replay the parent's sequence after a fork.

    Forked in a fresh interpreter: this test process runs grpc threads, and forking those is unsafe.
    """
    code = (
        "import os, sys; from yandexgpt_grpc._base import new_request_id\n"
        "r, w = os.pipe(); pid = os.fork()\n"
        "if pid == 0: os.write(w, new_request_id().encode()); os._exit(0)\n"
        "os.close(w); mine = new_request_id(); child = os.read(r, 100).decode(); os.waitpid(pid, 0)\n"
        "print(mine, child)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert len(out) == 2 and all(uuid.UUID(x).version == 4 for x in out) and out[0] != out[1]


def test_every_public_name_resolves() -> None:
    for name in yandexgpt_grpc.__all__:
        assert getattr(yandexgpt_grpc, name) is not None
        assert name in dir(yandexgpt_grpc)
    assert sys.modules["yandexgpt_grpc._client"].Client is yandexgpt_grpc.Client  # loaded on first use


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


def test_a_client_call_defers_what_it_does_not_use() -> None:
    """Service-account keys, the VM metadata service and json_format load on first use only."""
    code = (
        "import sys; from yandexgpt_grpc import Client; "
        "c = Client('127.0.0.1:1', insecure=True, api_key='k', folder_id='f'); c.close(); "
        "lazy = ['yandexgpt_grpc._auth_sa', 'yandexgpt_grpc._auth_metadata', 'google.protobuf.json_format', "
        "'http.client']; "
        "assert not [m for m in lazy if m in sys.modules], [m for m in lazy if m in sys.modules]; "
        "from yandexgpt_grpc import ServiceAccountKey, MetadataService; "
        "from yandexgpt_grpc._auth import ServiceAccountKey as again; "
        "assert again is ServiceAccountKey and 'yandexgpt_grpc._auth_sa' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fast_alternative_equals_the_constructed_one() -> None:
    from yandexgpt_grpc import Alternative, AlternativeStatus, ToolCall
    from yandexgpt_grpc._types import make_alternative

    args = ("abc", "c", AlternativeStatus.TOOL_CALLS, 2, True, (ToolCall("f", {"x": 1}),))
    fast, slow = make_alternative(*args), Alternative(*args)
    assert type(fast) is Alternative and fast == slow and repr(fast) == repr(slow)
    assert fast.index == 2 and fast.tool_calls == args[5] and fast.is_final
    assert fast._replace(text="x") == Alternative("x", *args[1:])
    plain = make_alternative("a", "a", AlternativeStatus.PARTIAL, 0, False, ())
    assert plain == Alternative("a", "a", AlternativeStatus.PARTIAL) and hash(plain) == hash(Alternative(*plain))
    with pytest.raises(AttributeError):
        fast.text = "changed"  # type: ignore[misc]


def test_fast_result_equals_the_constructed_one() -> None:
    import dataclasses

    from yandexgpt_grpc import AlternativeStatus, CompletionResult, Usage
    from yandexgpt_grpc._types import make_alternative, make_result

    alt = make_alternative("hi", "hi", AlternativeStatus.FINAL, 0, False, ())
    args = ((alt,), Usage(1, 2, 3, 0), "v1", "rid", "trace", None, (("x-request-id", "rid"),), (("t", "1"),))
    fast, slow = make_result(*args), CompletionResult(*args)
    assert type(fast) is CompletionResult and fast == slow and repr(fast) == repr(slow) and hash(fast) == hash(slow)
    for f in dataclasses.fields(CompletionResult):  # every field, those left out of == too
        assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    assert vars(fast) == vars(slow) and fast.text == "hi"
    assert dataclasses.replace(fast, model_version="v2") == dataclasses.replace(slow, model_version="v2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.model_version = "changed"  # type: ignore[misc]


# complete()'s answers: (text, wire status) of each alternative. The inlined path takes one
# alternative with text and a known final status; each case must come out as unary_result builds it.
_ANSWERS = [[("hi", 3)], [("hi", 2)], [("hi", 4)], [("hi", 5)], [("hi", 9)], [("", 3)], [("a", 3), ("b", 3)]]


@pytest.mark.parametrize("answer", _ANSWERS, ids=str)
def test_complete_fast_path_matches_unary_result(answer: list[tuple[str, int]]) -> None:
    from grpc.aio import Metadata

    from yandexgpt_grpc._convert import completion_answer, unary_result
    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )

    resp = tg_pb2.CompletionResponse(model_version="v")
    for text, status in answer:
        pb = resp.alternatives.add(status=status)  # type: ignore[arg-type]
        pb.message.role = "assistant"
        pb.message.text = text
    resp.usage.input_text_tokens, resp.usage.completion_tokens, resp.usage.total_tokens = 3, 4, 7
    resp.usage.completion_tokens_details.reasoning_tokens = 1
    initial = (("x-request-id", "r1"), ("x-server-trace-id", "t1"))
    got = completion_answer(resp, Metadata(*initial), Metadata(("trailer", "x")))
    want = unary_result(resp, "r1", "t1", initial, (("trailer", "x"),))
    assert got == want and got.alternatives == want.alternatives and got.usage.reasoning_tokens == 1
    assert (got.raw, got.initial_metadata, got.trailing_metadata) == (resp, initial, (("trailer", "x"),))


def test_complete_of_a_partial_answer_is_incomplete() -> None:
    from yandexgpt_grpc import IncompleteStreamError
    from yandexgpt_grpc._convert import completion_answer
    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )

    resp = tg_pb2.CompletionResponse()
    resp.alternatives.add(status=1).message.text = "cut"  # type: ignore[arg-type]
    with pytest.raises(IncompleteStreamError, match="no final alternative") as info:
        completion_answer(resp, (("x-request-id", "r9"),), ())
    assert info.value.partial is not None and info.value.partial.text == "cut" and info.value.request_id == "r9"


async def test_async_unary_without_a_response_is_incomplete(emu: object) -> None:
    """complete() uses a unary RPC; a server that answers OK with no message is still reported."""
    from yandexgpt_grpc import AsyncClient, IncompleteStreamError
    from yandexgpt_grpc.testing import Emulator, Reply

    assert isinstance(emu, Emulator)
    emu.enqueue("Completion", Reply(chunks=["a"], terminal=False))
    async with AsyncClient(emu.address, insecure=True, api_key="k", folder_id="b1g") as client:
        with pytest.raises(IncompleteStreamError, match="without a response"):
            await client.complete("yandexgpt-lite", "hi")


# What the server sends in turn: (text, wire status). The inlined stream path handles only
# "one alternative whose text extends the previous one with a known status"; each other
# case here must come out exactly as alternative_of builds it.
_ODD_STREAM = [("a", 1), ("ab", 9), ("X", 1), ("", 1), ("Xy", 3)]


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    """A loopback server on our stubs that streams _ODD_STREAM (the emulator only speaks known statuses)."""
    import grpc

    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )
    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2_grpc as tg_grpc,
    )

    class Servicer(tg_grpc.TextGenerationServiceServicer):
        async def Completion(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for text, status in _ODD_STREAM:
                resp = tg_pb2.CompletionResponse(model_version="odd")
                alt = resp.alternatives.add(status=status)  # type: ignore[arg-type]
                alt.message.role = "assistant"
                alt.message.text = text
                yield resp

    server = grpc.aio.server()
    tg_grpc.add_TextGenerationServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_fallbacks_match_alternative_of(kind: str, odd_server: str) -> None:
    from yandexgpt_grpc import AlternativeStatus, AsyncClient, Client

    kwargs: dict[str, Any] = {"insecure": True, "api_key": "k", "folder_id": "b1g"}
    got = []
    if kind == "async":
        async with AsyncClient(odd_server, **kwargs) as aclient:
            stream = aclient.stream("yandexgpt-lite", "hi")
            async for alt in stream:
                got.append(alt)
            final = stream.final
    else:

        def run() -> Any:
            with Client(odd_server, **kwargs) as client:
                stream = client.stream("yandexgpt-lite", "hi")
                got.extend(stream)
                return stream.final

        final = await asyncio.to_thread(run)
    assert final is not None and final.text == "Xy" and final.model_version == "odd"
    assert [(a.text, a.delta, a.replaced) for a in got] == [
        ("a", "a", False),
        ("ab", "b", False),
        ("X", "X", True),
        ("", "", True),
        ("Xy", "Xy", False),
    ]
    unknown, partial = AlternativeStatus(9), AlternativeStatus.PARTIAL  # a number kept as UNKNOWN, not UNSPECIFIED
    assert [a.status for a in got] == [partial, unknown, partial, partial, AlternativeStatus.FINAL]
    assert got[1].status.is_unknown and int(got[1].status) == 9


def test_a_str_prompt_builds_the_same_request_as_a_user_message() -> None:
    from yandexgpt_grpc import Client, Message

    with Client("127.0.0.1:1", insecure=True, api_key="k", folder_id="b1g") as client:  # no I/O until a call
        cfg = client._config
        for text in ("hi", "", "  spaced\n"):
            plain = cfg.prepare("yandexgpt-lite", text, {"max_tokens": 5}, stream=True)
            typed = cfg.prepare("yandexgpt-lite", [Message.user(text)], {"max_tokens": 5}, stream=True)
            assert plain.SerializeToString(deterministic=True) == typed.SerializeToString(deterministic=True)
            assert [(m.role, m.WhichOneof("Content"), m.text) for m in plain.messages] == [("user", "text", text)]


@pytest.fixture
async def two_alt_server() -> AsyncIterator[str]:
    """Responses with two alternatives each: the path the inlined one-alternative case skips."""
    import grpc

    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )
    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2_grpc as tg_grpc,
    )

    class Servicer(tg_grpc.TextGenerationServiceServicer):
        async def Completion(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for texts, status in ((("a", "x"), 1), (("ab", "xy"), 1), (("abc", "xyz"), 3)):
                resp = tg_pb2.CompletionResponse(model_version="two")
                for text in texts:
                    alt = resp.alternatives.add(status=status)  # type: ignore[arg-type]
                    alt.message.role = "assistant"
                    alt.message.text = text
                yield resp

    server = grpc.aio.server()
    tg_grpc.add_TextGenerationServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_with_two_alternatives_per_response(kind: str, two_alt_server: str) -> None:
    """Each response yields index 0 then 1; a break between them loses nothing on the next loop."""
    from yandexgpt_grpc import AsyncClient, Client

    kwargs: dict[str, Any] = {"insecure": True, "api_key": "k", "folder_id": "b1g"}
    if kind == "async":
        async with AsyncClient(two_alt_server, **kwargs) as aclient:
            stream = aclient.stream("yandexgpt-lite", "hi")
            got = []
            async for alt in stream:  # stop after the first alternative of the second response
                got.append(alt)
                if len(got) == 3:
                    break
            got += [alt async for alt in stream]
            final = stream.final
    else:

        def run() -> Any:
            with Client(two_alt_server, **kwargs) as client:
                stream = client.stream("yandexgpt-lite", "hi")
                items = []
                for alt in stream:
                    items.append(alt)
                    if len(items) == 3:
                        break
                items += list(stream)
                return items, stream.final

        got, final = await asyncio.to_thread(run)
    assert [(a.index, a.text, a.delta) for a in got] == [
        (0, "a", "a"),
        (1, "x", "x"),
        (0, "ab", "b"),
        (1, "xy", "y"),
        (0, "abc", "c"),
        (1, "xyz", "z"),
    ]
    assert final is not None and [a.text for a in final.alternatives] == ["abc", "xyz"]
