"""The loopback server every client talks to: a minimal servicer on our generated stubs.

Responses are built once and replayed, so the server's cost per message is the same
for every client. The number of streamed messages comes from `max_tokens` (the bench
clients set it); `stream=false` answers with one message. Run as
`python -m bench._server [--cpu N]`; it prints its port and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc

from bench._common import pin
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as tg_grpc,
)

_WORD = "word "
_INITIAL = (("x-request-id", "bench-request"), ("x-server-trace-id", "bench-trace"))


def _responses(count: int) -> list[tg_pb2.CompletionResponse]:
    out = []
    for i in range(1, count + 1):
        resp = tg_pb2.CompletionResponse(model_version="bench")
        alt = resp.alternatives.add()
        alt.message.role = "assistant"
        alt.message.text = _WORD * i
        alt.status = 3 if i == count else 1  # FINAL / PARTIAL
        resp.usage.input_text_tokens = 10
        resp.usage.completion_tokens = i
        resp.usage.total_tokens = 10 + i
        out.append(resp)
    return out


class _Cache(dict[int, list[tg_pb2.CompletionResponse]]):
    def __missing__(self, count: int) -> list[tg_pb2.CompletionResponse]:
        self[count] = value = _responses(count)
        return value


_CACHE = _Cache()


def _script(request: tg_pb2.CompletionRequest) -> list[tg_pb2.CompletionResponse]:
    opts = request.completion_options
    return _CACHE[max(1, opts.max_tokens.value)] if opts.stream else _CACHE[1]


class AioServicer(tg_grpc.TextGenerationServiceServicer):
    async def Completion(self, request, context):  # type: ignore[no-untyped-def]
        await context.send_initial_metadata(_INITIAL)
        for resp in _script(request):
            yield resp


class SyncServicer(tg_grpc.TextGenerationServiceServicer):
    def Completion(self, request, context):  # type: ignore[no-untyped-def]
        context.send_initial_metadata(_INITIAL)
        yield from _script(request)


async def _serve_aio() -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    tg_grpc.add_TextGenerationServiceServicer_to_server(AioServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await server.stop(None)


def _serve_sync() -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=256), options=[("grpc.so_reuseport", 0)])
    tg_grpc.add_TextGenerationServiceServicer_to_server(SyncServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--kind", choices=("aio", "sync"), default="aio")
    args = parser.parse_args()
    pin(args.cpu)
    if args.kind == "aio":
        asyncio.run(_serve_aio())
    else:
        _serve_sync()


if __name__ == "__main__":
    main()
