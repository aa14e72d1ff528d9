"""Behaviour the hot-path trims must keep: request ids, lazy package attributes."""

from __future__ import annotations

import asyncio
import contextlib
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


@contextlib.asynccontextmanager
async def _scripted_server(script: list[tuple[tuple[str, ...], int]], model_version: str) -> AsyncIterator[str]:
    """A loopback server on our stubs streaming `script`: per response, the texts of its alternatives and their
    wire status (the emulator only speaks known statuses and one alternative)."""
    import grpc

    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as tg_pb2,
    )
    from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2_grpc as tg_grpc,
    )

    class Servicer(tg_grpc.TextGenerationServiceServicer):
        async def Completion(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for texts, status in script:
                resp = tg_pb2.CompletionResponse(model_version=model_version)
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


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    async with _scripted_server([((text,), status) for text, status in _ODD_STREAM], "odd") as address:
        yield address


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
    script = [(("a", "x"), 1), (("ab", "xy"), 1), (("abc", "xyz"), 3)]
    async with _scripted_server(script, "two") as address:
        yield address


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


# -- start-up of a one-shot CLI call (issue 16 item 8) ----------------------------------------------

# What a one-shot `yandexgpt-grpc "text"` loaded before the start-up trims and does not use: JSON output
# and tool results (json), argparse's terminal-width lookup (shutil, with bz2, lzma and fnmatch),
# the plaintext-target check of 127.0.0.1 (ipaddress), the operation service's stubs (submit/operation
# only), and what was already deferred (tool calls' json_format, the other credential kinds, asyncio's
# client). asyncio itself is not on the list: grpc imports it.
_NOT_FOR_A_ONE_SHOT_CALL = [
    "json",
    "shutil",
    "bz2",
    "lzma",
    "fnmatch",
    "ipaddress",
    "google.protobuf.json_format",
    "http.client",
    "yandexgpt_grpc._generated.yandex.cloud.operation.operation_service_pb2",
    "yandexgpt_grpc._generated.yandex.cloud.operation.operation_service_pb2_grpc",
    "yandexgpt_grpc._async_client",
    "yandexgpt_grpc._auth_sa",
    "yandexgpt_grpc._auth_metadata",
    "yandexgpt_grpc._tools",
    "yandexgpt_grpc.testing",
]


def test_a_one_shot_cli_call_loads_only_what_it_uses(emu: Any) -> None:
    """A real call through the console script's entry point, then a look at sys.modules."""
    code = (
        "import gc, sys\n"
        "from yandexgpt_grpc.cli import main\n"
        "passes = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and passes.append(info))\n"
        "rc = main()\n"
        "print('--gc--', gc.isenabled(), len(passes), '--modules--', *sorted(sys.modules))\n"
        "sys.exit(rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_", "GRPC_"))}
    args = ["--endpoint", emu.address, "--insecure", "--api-key", "k", "--folder-id", "b1g", "Hello"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    answer, _, modules = proc.stdout.partition("--modules--")
    # No GC pass during the command, and the collector is back on when main() returns.
    assert answer == 'You said: "Hello". This is the emulator answering.\n--gc-- True 0 '
    loaded = set(modules.split())
    assert "yandexgpt_grpc._client" in loaded and "argparse" in loaded  # it did run the command
    assert not [m for m in _NOT_FOR_A_ONE_SHOT_CALL if m in loaded]


@pytest.mark.parametrize("columns", [None, "60", "133", "0", "-3", "wide"])
@pytest.mark.parametrize("command", ["complete", "tokenize", "batch"])
def test_cli_help_is_laid_out_as_argparse_would(
    monkeypatch: pytest.MonkeyPatch, columns: str | None, command: str
) -> None:
    """The CLI's formatter finds the width without shutil; the help text is what the stock one makes."""
    import argparse

    from yandexgpt_grpc._cli._args import build_parser

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    parser = build_parser(command)
    ours = parser.format_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    assert ours == parser.format_help()


def test_cli_width_follows_a_terminal() -> None:
    """On a pseudo-terminal of 57 columns (no $COLUMNS) the help wraps as shutil's width would make it."""
    pty = pytest.importorskip("pty")
    code = (
        "import argparse, fcntl, struct, sys, termios\n"
        "fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 57, 0, 0))\n"
        "from yandexgpt_grpc._cli._args import _columns\n"
        "import shutil\n"
        "print('cols', _columns(), shutil.get_terminal_size().columns)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(sys.executable, [sys.executable, "-c", code], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    assert b"cols 57 57" in out, out


def test_is_local_without_ipaddress_agrees_with_it() -> None:
    import ipaddress

    from yandexgpt_grpc._net import is_local, split_host

    def reference(endpoint: str) -> bool:
        if endpoint.startswith(("unix:", "unix-abstract:")):
            return True
        host = split_host(endpoint).lower()
        if host in ("localhost", "ip6-localhost", "ip6-loopback"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    hosts = ["127.0.0.1", "127.1.2.3", "127.255.255.255", "126.0.0.1", "128.0.0.1", "10.0.0.1", "0.0.0.0"]
    hosts += ["127.0.0.01", "127.00.0.1", "0127.0.0.1", "256.0.0.1", "127.0.0.256", "127.0.0", "127.0.0.1.5"]
    hosts += ["127.0.0.\uff11", "１27.0.0.1", "127..0.1", "127.0.0.", "-127.0.0.1", "127.0.0.1 ", "+127.0.0.1"]
    hosts += ["[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::2]", "localhost", "LocalHost", "example.com"]
    for host in hosts:
        for endpoint in (host, f"{host}:50051", f"dns:///{host}:443"):
            assert is_local(endpoint) == reference(endpoint), endpoint


def test_auth_scheme_prefilter_agrees_with_the_pattern() -> None:
    """strip_auth_scheme skips its regular expression when no match can start; the results are the same."""
    import re

    from yandexgpt_grpc._checks import _AUTH_PREFIX, strip_auth_scheme
    from yandexgpt_grpc._errors import ConfigurationError

    def reference(value: str, scheme: str) -> object:
        match = re.match(_AUTH_PREFIX, value, re.IGNORECASE)
        if match is None:
            return value
        found = {"api-key": "Api-Key", "bearer": "Bearer"}[match.group(1).lower()]
        return ConfigurationError if found != scheme else value[match.end() :]

    values = ["AQVN" + "x" * 36, "t1.abc.def", "Api-Key abc", "api-key\tabc", " Bearer t", "BEARER", "bearer",
              "Authorization: Bearer t", "authorization:api-key k", "Api-\u212aey k", "apikey", "be", "a", "",
              "  \n Bearer x", "Bearerx", "AUTHORIZATION : API-KEY z", "\u0391pi-Key k", "ap", "au"]  # fmt: skip
    for value in values:
        for scheme in ("Api-Key", "Bearer"):
            expected = reference(value, scheme)
            if expected is ConfigurationError:
                with pytest.raises(ConfigurationError):
                    strip_auth_scheme(value, scheme, "key")
            else:
                assert strip_auth_scheme(value, scheme, "key") == expected, value


def test_only_a_one_shot_process_of_its_own_goes_without_gc_passes(emu: Any, tmp_path: Any) -> None:
    """main() called in-process (stderr given) leaves the collector alone; `batch` keeps it (it runs long)."""
    import gc
    import io

    from yandexgpt_grpc.cli import main

    args = ["--endpoint", emu.address, "--insecure", "--api-key", "k", "--folder-id", "b1g"]
    assert gc.isenabled()
    assert main([*args, "Hello"], stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert gc.isenabled()

    (tmp_path / "in.jsonl").write_text('{"id": 1, "messages": "Hello"}\n')
    code = "import gc, sys\nfrom yandexgpt_grpc.cli import main\nrc = main()\nprint('--gc--', gc.isenabled())\n"
    code += "sys.exit(rc)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_", "GRPC_"))}
    batch = ["batch", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), "--no-progress", *args]
    proc = subprocess.run([sys.executable, "-c", code, *batch], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("--gc-- True\n") and (tmp_path / "out.jsonl").read_text().count("\n") == 1


# Responses of two alternatives, then of one: the inlined one-alternative path must take up index 0's
# text as the two-alternative responses left it, and still see a replaced text after them.
_MIXED_STREAM = [
    (("a", "x"), 1),
    (("ab",), 1),
    (("abc", "xy"), 1),
    (("abcd",), 1),
    (("Z",), 1),
    (("Zq",), 1),
    (("Zqr", "xyz"), 3),
]


@pytest.fixture
async def mixed_server() -> AsyncIterator[str]:
    async with _scripted_server(_MIXED_STREAM, "mixed") as address:
        yield address


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_one_alternative_after_two(kind: str, mixed_server: str) -> None:
    from yandexgpt_grpc import AsyncClient, Client

    kwargs: dict[str, Any] = {"insecure": True, "api_key": "k", "folder_id": "b1g"}
    if kind == "async":
        async with AsyncClient(mixed_server, **kwargs) as aclient:
            astream = aclient.stream("yandexgpt-lite", "hi")
            got = [alt async for alt in astream]
    else:

        def run() -> list[Any]:
            with Client(mixed_server, **kwargs) as client:
                return list(client.stream("yandexgpt-lite", "hi"))

        got = await asyncio.to_thread(run)
    assert [(a.index, a.text, a.delta, a.replaced) for a in got] == [
        (0, "a", "a", False),
        (1, "x", "x", False),
        (0, "ab", "b", False),
        (0, "abc", "c", False),
        (1, "xy", "y", False),
        (0, "abcd", "d", False),
        (0, "Z", "Z", True),
        (0, "Zq", "q", False),
        (0, "Zqr", "r", False),
        (1, "xyz", "z", False),
    ]
