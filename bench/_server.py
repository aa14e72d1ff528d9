"""The loopback server every client talks to: a minimal servicer with the real API's message shape.

It is built on the `yandexcloud` package's classes (the official stubs, in the test extra), so the
server depends on none of our code; on the wire both sets of classes are the same. Each response
carries what the real API sends while streaming: the whole text so far (8 more characters per
message), cumulative usage, the model version, PARTIAL then FINAL, and `x-request-id` /
`x-server-trace-id` headers. Responses are built once and replayed, so the server's cost per message
is the same for every client. The number of streamed messages comes from `max_tokens` (the bench
clients set it); `stream=false` answers with one message. Run as
`python -m bench._server [--cpu N] [--kind aio|sync]`; it prints its port and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from yandex.cloud.ai.foundation_models.v1.text_generation import text_generation_service_pb2 as tg_pb2
from yandex.cloud.ai.foundation_models.v1.text_generation import text_generation_service_pb2_grpc as tg_grpc

from bench._common import pin

CHUNK = "to be or"  # 8 characters of new text per message; ASCII, the cheapest text for the client to decode
MODEL_VERSION = "23.10.2024"
INPUT_TOKENS = 14
_INITIAL = (
    ("x-request-id", "5b0a6f3e-6c1d-4b7e-9a57-0c5a3f9d2e41"),
    ("x-server-trace-id", "9f2c41d07b3e5a68c1d4e7f0a2b5c8d1"),
)


def responses(count: int) -> list[tg_pb2.CompletionResponse]:
    """A stream of `count` messages shaped like the real API's (the last one FINAL)."""
    out = []
    for i in range(1, count + 1):
        resp = tg_pb2.CompletionResponse(model_version=MODEL_VERSION)
        alt = resp.alternatives.add()
        alt.message.role = "assistant"
        alt.message.text = CHUNK * i
        alt.status = 3 if i == count else 1  # FINAL / PARTIAL
        resp.usage.input_text_tokens = INPUT_TOKENS
        resp.usage.completion_tokens = 2 * i
        resp.usage.total_tokens = INPUT_TOKENS + 2 * i
        out.append(resp)
    return out


class _Cache(dict[int, list[tg_pb2.CompletionResponse]]):
    def __missing__(self, count: int) -> list[tg_pb2.CompletionResponse]:
        self[count] = value = responses(count)
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
