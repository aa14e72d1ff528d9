"""One client process per round: `python -m bench._workers '<json spec>'` prints a JSON result.

The raw variants are what a user writes by hand with grpcio: default channel options,
`stub.Completion(request, metadata=...)`, iterate. `raw` uses our generated stubs, loaded
without running our package's `__init__`, so it pays nothing of ours; `raw_yc` uses the
official `yandexcloud` package's stubs (the code a user of the official stubs writes).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import API_KEY, MODEL_URI, PROMPT, pin

_SRC = Path(__file__).resolve().parent.parent / "src" / "yandexgpt_grpc"
_YC_TG = "yandex.cloud.ai.foundation_models.v1.text_generation"
_TG = "yandexgpt_grpc._generated." + _YC_TG


def _raw_modules(official: bool = False) -> tuple[Any, Any]:
    """The request/stub modules: `yandexcloud`'s, or ours skipping `yandexgpt_grpc/__init__.py`."""
    import importlib

    if official:
        return importlib.import_module(_YC_TG + ".text_generation_service_pb2"), importlib.import_module(
            _YC_TG + ".text_generation_service_pb2_grpc"
        )
    if "yandexgpt_grpc" not in sys.modules:
        import importlib.util

        spec = importlib.util.find_spec("yandexgpt_grpc")
        shell = types.ModuleType("yandexgpt_grpc")
        shell.__path__ = (
            list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else [str(_SRC)]
        )
        sys.modules["yandexgpt_grpc"] = shell
    return importlib.import_module(_TG + ".text_generation_service_pb2"), importlib.import_module(
        _TG + ".text_generation_service_pb2_grpc"
    )


class _Raw:
    """Hand-written grpcio calls, the obvious way."""

    official = False  # our generated stubs; `_RawYC` sets it

    def __init__(self, target: str, aio: bool) -> None:
        import grpc

        self.pb2, pb2_grpc = _raw_modules(self.official)
        self.channel = grpc.aio.insecure_channel(target) if aio else grpc.insecure_channel(target)
        self.stub = pb2_grpc.TextGenerationServiceStub(self.channel)
        self.metadata = (("authorization", "Api-Key " + API_KEY),)

    def request(self, stream: bool, count: int) -> Any:
        req = self.pb2.CompletionRequest(model_uri=MODEL_URI)
        req.completion_options.stream = stream
        req.completion_options.max_tokens.value = count
        req.messages.add(role="user", text=PROMPT)
        return req

    def unary(self) -> str:
        resp = None
        for resp in self.stub.Completion(self.request(False, 1), metadata=self.metadata):  # noqa: B007
            pass
        assert resp is not None
        return str(resp.alternatives[0].message.text)

    def stream(self, count: int) -> int:
        n = 0
        for resp in self.stub.Completion(self.request(True, count), metadata=self.metadata):
            resp.alternatives[0].message.text  # noqa: B018 - read what a user reads
            n += 1
        return n

    async def aunary(self) -> str:
        resp = None
        async for resp in self.stub.Completion(self.request(False, 1), metadata=self.metadata):  # noqa: B007
            pass
        assert resp is not None
        return str(resp.alternatives[0].message.text)

    async def astream(self, count: int) -> int:
        n = 0
        async for resp in self.stub.Completion(self.request(True, count), metadata=self.metadata):
            resp.alternatives[0].message.text  # noqa: B018
            n += 1
        return n


class _RawYC(_Raw):
    """The same hand-written calls on the `yandexcloud` package's stubs."""

    official = True


class _Ours:
    """The same calls through Client / AsyncClient."""

    def __init__(self, target: str, aio: bool) -> None:
        import yandexgpt_grpc

        cls = yandexgpt_grpc.AsyncClient if aio else yandexgpt_grpc.Client
        self.client: Any = cls(target, insecure=True, api_key=API_KEY)

    def unary(self) -> str:
        return str(self.client.complete(MODEL_URI, PROMPT, max_tokens=1).text)

    def stream(self, count: int) -> int:
        n = 0
        for alt in self.client.stream(MODEL_URI, PROMPT, max_tokens=count):
            alt.delta  # noqa: B018 - read what a user reads
            n += 1
        return n

    async def aunary(self) -> str:
        r = await self.client.complete(MODEL_URI, PROMPT, max_tokens=1)
        return str(getattr(r, "text", None) or r.alternatives[0].message.text)

    async def astream(self, count: int) -> int:
        n = 0
        async for alt in self.client.stream(MODEL_URI, PROMPT, max_tokens=count):
            alt.delta  # noqa: B018
            n += 1
        return n


VARIANTS: dict[str, type[_Raw | _Ours]] = {"raw": _Raw, "raw_yc": _RawYC, "ours": _Ours}


def _timed(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    clock = time.perf_counter
    out = []
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


async def _atimed(fn: Callable[[], Any], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await fn()
    clock = time.perf_counter
    out = []
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append(clock() - t0)
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    pin(spec.get("cpu"))
    scenario, target = spec["scenario"], f"127.0.0.1:{spec['port']}"
    n, warmup, msgs = spec["n"], spec["warmup"], spec.get("messages", 1)
    cls = VARIANTS[spec["variant"]]
    if scenario.startswith("async"):
        return asyncio.run(_run_async(cls, target, scenario, n, warmup, msgs, spec.get("concurrency", 1)))
    c = cls(target, False)
    if scenario == "unary":
        return {"samples": _timed(c.unary, n, warmup)}
    if scenario == "stream":
        return {"samples": [t / msgs for t in _timed(lambda: c.stream(msgs), n, warmup)]}
    if scenario == "memory":
        for i in range(warmup):
            c.unary() if i % 2 else c.stream(msgs)
        gc.collect()
        before = _rss_bytes()
        for i in range(n):
            c.unary() if i % 2 else c.stream(msgs)
        gc.collect()
        after = _rss_bytes()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"rss_before": before, "rss_after": after, "peak": peak}
    raise ValueError(f"unknown scenario {scenario!r}")


async def _run_async(  # noqa: PLR0917 - one worker's knobs, passed once
    cls: type[_Ours | _Raw], target: str, scenario: str, n: int, warmup: int, msgs: int, concurrency: int
) -> dict[str, Any]:
    c = cls(target, True)  # grpc.aio channels belong to the loop they are made in
    try:
        if scenario == "async_unary":
            return {"samples": await _atimed(c.aunary, n, warmup)}
        if scenario == "async_stream":
            return {"samples": [t / msgs for t in await _atimed(lambda: c.astream(msgs), n, warmup)]}
        if scenario == "async_fanout":

            async def fan() -> None:
                await asyncio.gather(*(c.astream(msgs) for _ in range(concurrency)))

            return {"samples": [t / (msgs * concurrency) for t in await _atimed(fan, n, warmup)]}
        raise ValueError(f"unknown scenario {scenario!r}")
    finally:
        closer = getattr(c, "client", None) or c.channel
        await closer.close()


if __name__ == "__main__":
    json.dump(run(json.loads(sys.argv[1])), sys.stdout)
