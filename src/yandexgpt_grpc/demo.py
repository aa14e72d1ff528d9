"""`make demo`: the documented translation example against an embedded emulator.

Needs no credentials and no network: the emulator runs in this process on a
loopback port, and both clients talk to it over real gRPC.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from . import AsyncClient, Client, Message
from .testing import Emulator

MESSAGES = [
    Message.system("Translate the text"),
    Message.user("To be, or not to be: that is the question."),
]
MODEL = "yandexgpt-lite"
FOLDER = "b1g-demo-folder"
KEY = "demo-key"


def _sync_part(address: str, out: TextIO) -> None:
    out.write(f"== Client.stream({MODEL!r}) against the emulator at {address}\n")
    with Client(address, insecure=True, api_key=KEY, folder_id=FOLDER) as client:
        with client.stream(MODEL, MESSAGES, temperature=0.3) as stream:
            for alt in stream:
                out.write(f"  [{alt.status.name:<7}] {alt.text!r}\n")
                out.flush()
            final = stream.get_final()
        usage = final.usage
        out.write(
            f"final status: {final.status.name}; usage: input={usage.input_tokens} "
            f"completion={usage.completion_tokens} total={usage.total_tokens}; "
            f"model version: {final.model_version}; request id: {final.request_id}\n\n"
        )


async def _async_part(address: str, out: TextIO) -> None:
    async with AsyncClient(address, insecure=True, api_key=KEY, folder_id=FOLDER) as client:
        out.write(f"== AsyncClient.stream({MODEL!r})\n")
        async for alt in client.stream(MODEL, MESSAGES):
            out.write(f"  [{alt.status.name:<7}] +{alt.delta!r}\n")
            out.flush()
        out.write(f"\n== AsyncClient.complete({MODEL!r})\n")
        result = await client.complete(MODEL, MESSAGES, max_tokens=200)
        out.write(f"{result.text}\nstatus: {result.status.name}; total tokens: {result.usage.total_tokens}\n")


def main(out: TextIO = sys.stdout) -> int:
    with Emulator() as emu:
        _sync_part(emu.address, out)
        asyncio.run(_async_part(emu.address, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
