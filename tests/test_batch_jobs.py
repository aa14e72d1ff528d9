"""`BatchJobs` / `AsyncBatchJobs` on both clients against the emulator's batch engine (loopback)."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._clock import ManualClock as Clock
from yandexgpt_grpc import AsyncClient, Client, OperationTimeoutError
from yandexgpt_grpc._batch_io import OutputLock
from yandexgpt_grpc._cloud_batch import CloudBatchError, Poll
from yandexgpt_grpc._cloud_jobs import AsyncBatchJob, AsyncBatchJobs, BatchJob, BatchJobs
from yandexgpt_grpc._errors import BatchLockedError
from yandexgpt_grpc.testing import Emulator
from yandexgpt_grpc.testing._batch_engine import Schedule
from yandexgpt_grpc.testing._batch_services import BatchEngineService

FOLDER = "b1gtestfolder"
API_KEY = "test-api-key-0123456789"
FAST = Poll(initial=0.01, growth=1.0, max_interval=0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock(0.0)


@pytest.fixture
def batch(clock: Clock) -> Iterator[BatchEngineService]:
    with BatchEngineService(schedule=Schedule(pending=10, per_batch=10, batch_size=50), clock=clock) as b:
        yield b


@pytest.fixture
def emu(batch: BatchEngineService) -> Iterator[Emulator]:
    with Emulator(extra_services=[batch], api_keys=[API_KEY]) as e:
        yield e


class Jobs:
    """One async face for BatchJobs and AsyncBatchJobs (the blocking one runs in a thread)."""

    def __init__(self, kind: str, client: Client | AsyncClient) -> None:
        self.kind = kind
        self.client = client
        self.jobs: BatchJobs | AsyncBatchJobs = client.batch_jobs
        self.jobs.poll = FAST

    async def call(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        attr = getattr(type(target), name, None)
        if isinstance(attr, property):  # BatchJob.status / .progress are properties doing I/O
            return await asyncio.to_thread(getattr, target, name)
        method = getattr(target, name)
        if self.kind == "async":
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        return await asyncio.to_thread(method, *args, **kwargs)


@pytest.fixture(params=["sync", "async"])
async def jobs(request: pytest.FixtureRequest, emu: Emulator) -> AsyncIterator[Jobs]:
    kwargs = {"endpoint": emu.address, "insecure": True, "api_key": API_KEY, "folder_id": FOLDER}
    if request.param == "async":
        client: Client | AsyncClient = AsyncClient(**kwargs)
    else:
        client = Client(**kwargs)
    yield Jobs(request.param, client)
    if isinstance(client, AsyncClient):
        await client.close()
    else:
        client.close()


def write_in(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "messages": f"question {i}"}) + "\n" for i in range(n)))
    return path


async def test_run_in_to_out_with_the_clients_credentials(
    jobs: Jobs, emu: Emulator, batch: BatchEngineService, clock: Clock, tmp_path: Path
) -> None:
    src, out = write_in(tmp_path, 120), tmp_path / "out.jsonl"
    seen: list[tuple[str, int, int]] = []

    def progress(*p: Any) -> None:  # the engine's time moves 10 s between polls
        seen.append(p)
        clock.now += 10

    summary = await jobs.call(jobs.jobs, "run", src, out, on_progress=progress)
    assert summary.ok
    assert summary.total == summary.succeeded == 120
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == list(range(120))
    assert seen == [
        ("PENDING", 0, 3),
        ("IN_PROGRESS", 0, 3),
        ("IN_PROGRESS", 1, 3),
        ("IN_PROGRESS", 2, 3),
        ("COMPLETED", 3, 3),
    ]
    batch_calls = [c for c in emu.calls if c.method.startswith(("Dataset.", "Batch"))]
    assert batch_calls
    for call in batch_calls:
        assert call.header("authorization") == f"Api-Key {API_KEY}"
        assert call.header("x-client-request-id")
    for req in batch.store.requests:
        assert "authorization" not in req.headers


async def test_submit_follow_results_list_and_delete(
    jobs: Jobs, batch: BatchEngineService, clock: Clock, tmp_path: Path
) -> None:
    src = write_in(tmp_path, 120)
    job = await jobs.call(jobs.jobs, "submit", src, temperature=0.2)
    assert isinstance(job, (BatchJob, AsyncBatchJob))
    assert job.id == batch.engine.tasks[0].id
    assert batch.engine.tasks[0].options == {"temperature": pytest.approx(0.2)}
    assert await jobs.call(job, "status") == "PENDING"
    clock.now = 25  # past PENDING (10 s), one and a half batches of 10 s
    assert await jobs.call(job, "status") == "IN_PROGRESS"
    assert await jobs.call(job, "progress") == (1, 3)
    clock.now = 1000
    state = await jobs.call(job, "wait", timeout=5)
    assert (state.status, state.completed_batches, state.total_batches) == ("COMPLETED", 3, 3)
    results = list(await jobs.call(job, "results"))
    assert sorted(r["id"] for r in results) == list(range(120))
    assert all(r["text"].startswith('You said: "question') for r in results)
    # re-attach by id, as another process would
    again = jobs.jobs.get(job.id)
    assert await jobs.call(again, "status") == "COMPLETED"
    with pytest.raises(ValueError, match="needs the IN file"):
        await jobs.call(again, "results")
    assert len(list(await jobs.call(again, "results", src))) == 120
    listed = await jobs.call(jobs.jobs, "list")
    assert [(j.id, j.last.status) for j in listed] == [(job.id, "COMPLETED")]
    await jobs.call(job, "delete")
    assert await jobs.call(jobs.jobs, "list") == []


async def test_cancel_and_a_wait_that_runs_out(
    jobs: Jobs, batch: BatchEngineService, clock: Clock, tmp_path: Path
) -> None:
    job = await jobs.call(jobs.jobs, "submit", write_in(tmp_path, 10))
    with pytest.raises(OperationTimeoutError, match=f"batch task {job.id} is still PENDING"):
        await jobs.call(job, "wait", timeout=0.05)
    await jobs.call(job, "cancel")
    assert (await jobs.call(job, "wait")).status == "CANCELED"
    with pytest.raises(CloudBatchError, match="is CANCELED; results exist once it is COMPLETED"):
        await jobs.call(job, "results")
    with pytest.raises(Exception, match="already CANCELED") as info:
        await jobs.call(job, "cancel")
    assert type(info.value).__name__ == "FailedPreconditionError"


async def test_bad_input_is_refused_before_any_call(jobs: Jobs, emu: Emulator, tmp_path: Path) -> None:
    src = write_in(tmp_path, 3)
    with pytest.raises(ValueError, match="cannot take option"):
        await jobs.call(jobs.jobs, "submit", src, tools=[])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="has no request to send"):
        await jobs.call(jobs.jobs, "submit", empty)
    assert not [c for c in emu.calls if c.method.startswith("Dataset.")]


async def test_a_second_writer_of_out_is_refused_before_any_call(jobs: Jobs, emu: Emulator, tmp_path: Path) -> None:
    """One writer per OUT, as for the local runner: a run already holding OUT's lock means no second task."""
    src, out = write_in(tmp_path, 3), tmp_path / "out.jsonl"
    with OutputLock(out), pytest.raises(BatchLockedError, match="another batch run is writing"):
        await jobs.call(jobs.jobs, "run", src, out)
    assert not [c for c in emu.calls if c.method.startswith("Dataset.")]
    assert not (tmp_path / "out.jsonl.cloud-state.json").exists()  # nothing of this run was recorded


async def test_batch_jobs_is_one_object_per_client_and_needs_an_open_client(jobs: Jobs) -> None:
    assert jobs.client.batch_jobs is jobs.jobs
    assert isinstance(jobs.jobs, AsyncBatchJobs if jobs.kind == "async" else BatchJobs)
    if isinstance(jobs.client, AsyncClient):
        await jobs.client.close()
    else:
        jobs.client.close()
    with pytest.raises(RuntimeError, match="is closed"):
        _ = jobs.client.batch_jobs


def test_the_sync_and_async_faces_mirror_each_other() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(BatchJobs) == public(AsyncBatchJobs)
    assert public(BatchJob) == public(AsyncBatchJob)
    for name in ("refresh", "wait", "cancel", "delete", "results"):
        assert (
            inspect.signature(getattr(BatchJob, name)).parameters.keys()
            == inspect.signature(getattr(AsyncBatchJob, name)).parameters.keys()
        )
