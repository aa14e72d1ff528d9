"""Ctrl-C in a stream and close() under load (issue 17 items 2 and 3)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from yandexgpt_grpc.testing import Emulator, Fault

MODEL = "yandexgpt-lite"

# The child streams from the parent's emulator and is interrupted (SIGINT) while it waits for the
# next message; it keeps the KeyboardInterrupt (and so its traceback and the frames in it) in a
# global, as a REPL, IPython or logging.exception would, and lives on for a while.
CHILD = r"""
import asyncio, sys, time
from yandexgpt_grpc import AsyncClient, Client

kw = dict(endpoint=sys.argv[1], insecure=True, api_key="k", folder_id="f")
kind, where, reader = sys.argv[2], sys.argv[3], sys.argv[4]
if reader == "grpc-thread":  # grpc's other blocking reader, a user's channel option away
    kw["channel_options"] = [("SingleThreadedUnaryStream", 0)]
KEPT = []

def ready():
    print("ready", flush=True)

if kind == "sync":
    client = Client(**kw)
    stream = client.stream("yandexgpt-lite", "hi")
    try:
        if where == "first":
            ready()
        for alt in stream:
            ready()
    except KeyboardInterrupt as exc:
        KEPT.append(exc)
else:
    async def main():
        client = AsyncClient(**kw)
        stream = client.stream("yandexgpt-lite", "hi")
        if where == "first":
            ready()
        async for alt in stream:
            ready()
    try:
        asyncio.run(main())
    except KeyboardInterrupt as exc:
        KEPT.append(exc)
print("interrupted", flush=True)
time.sleep(3)  # the traceback is still alive: the server must have seen the cancellation by now
"""


@pytest.mark.parametrize(("kind", "reader"), [("sync", "caller-thread"), ("sync", "grpc-thread"), ("async", "loop")])
@pytest.mark.parametrize("where", ["first", "later"])
async def test_ctrl_c_in_a_stream_cancels_the_rpc_even_with_the_traceback_kept(
    kind: str, emu: Emulator, where: str, reader: str
) -> None:
    if where == "first":  # interrupted while waiting for the first response
        emu.enqueue("Completion", Fault(after=0, stall=True))
    else:  # interrupted between two messages
        emu.enqueue("Completion", Fault(after=1, chunks=["first"], stall=True))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, emu.address, kind, where, reader],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        assert await asyncio.to_thread(emu.wait_for, lambda: len(emu.calls) == 1, 5.0)
        await asyncio.sleep(0.2)  # the child is blocked waiting for the next message
        proc.send_signal(signal.SIGINT)
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "interrupted"
        sent = time.monotonic()
        assert await asyncio.to_thread(emu.wait_for, lambda: emu.calls[0].cancelled, 2.0), (
            "the server did not see the RPC cancelled while the child kept the traceback"
        )
        assert time.monotonic() - sent < 2.0
        assert proc.poll() is None  # and that was before the child exited
    finally:
        proc.kill()
        proc.communicate()  # also closes the pipes


# --- item 10: fork() (what the README says about it) ------------------------------------------------

FORK_CHILD = r"""
import os, sys
from yandexgpt_grpc import Client, YandexGPTError

kw = dict(insecure=True, api_key="k", folder_id="f")
client = Client(sys.argv[1], **kw)
client.complete("yandexgpt-lite", "before the fork")
pid = os.fork()
if pid == 0:
    try:
        client.complete("yandexgpt-lite", "inherited", timeout=5, retry=None)
        print("inherited: worked", flush=True)
    except YandexGPTError as exc:
        print("inherited: failed", type(exc).__name__, flush=True)
    fresh = Client(sys.argv[1], **kw)
    print("fresh:", fresh.complete("yandexgpt-lite", "made in the child", timeout=5).status, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent:", client.complete("yandexgpt-lite", "after the fork", timeout=5).status, flush=True)
"""


def test_fork_a_client_made_in_the_child_works_and_the_parent_keeps_its_own(emu: Emulator) -> None:
    """What the README promises; the inherited client's outcome depends on grpc's fork handling
    (an UNAVAILABLE error, or a call over the parent's own socket when grpc skips its fork
    handlers): only that it neither hangs nor crashes is checked."""
    proc = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, emu.address], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("inherited: "), proc.stdout
    assert lines[1:] == ["fresh: FINAL", "parent: FINAL"]
