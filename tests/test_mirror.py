"""Sync and async twins mirror each other: same public names, same parameters, same defaults.

The naming convention (README, "Sync and async"): an asyncio twin class is `Async<Name>` with the
same member names, awaited where they do I/O, plus `aclose()`; a twin function or a twin method on
one shared object takes an `a` prefix (`arun_batch`, `aauthorization`).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import yandexgpt_grpc
from yandexgpt_grpc import (
    ApiKey,
    AsyncClient,
    AsyncCompletionStream,
    AsyncOperation,
    Client,
    CompletionStream,
    Credentials,
    IamToken,
    IamTokenProvider,
    MetadataService,
    Operation,
    ServiceAccountKey,
    arun_batch,
    run_batch,
)


def _norm(annotation: Any) -> str:
    text = str(annotation)
    for twin, plain in (("AsyncIterator", "Iterator"), ("Async", ""), ("Awaitable[", "[")):
        text = text.replace(twin, plain)
    return text


def _params(fn: Any) -> list[tuple[str, Any, Any, str]]:
    return [(p.name, p.kind, p.default, _norm(p.annotation)) for p in inspect.signature(fn).parameters.values()]


def _members(cls: type) -> dict[str, Any]:
    return {name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")}


def assert_twins(sync_cls: type, async_cls: type, *, async_only: frozenset[str] = frozenset()) -> None:
    sync, asyn = _members(sync_cls), _members(async_cls)
    assert set(asyn) == set(sync) | async_only, (sorted(set(asyn) ^ set(sync)), async_only)
    for name, member in sync.items():
        other = asyn[name]
        assert type(member) is type(other), name  # a property stays a property, a method a method
        if inspect.isfunction(member):
            assert _params(member) == _params(other), name
            ret, other_ret = inspect.signature(member).return_annotation, inspect.signature(other).return_annotation
            assert _norm(ret) == _norm(other_ret), name
            # Never a coroutine on the blocking side; an async close() stays sync (see aclose()).
            assert not inspect.iscoroutinefunction(member), name


def test_clients() -> None:
    assert_twins(Client, AsyncClient, async_only=frozenset({"aclose"}))
    assert inspect.signature(Client.__init__) == inspect.signature(AsyncClient.__init__)
    for name in ("complete", "submit", "tokenize", "tokenize_messages", "close", "aclose"):
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
    assert not inspect.iscoroutinefunction(AsyncClient.stream)  # returns its stream; the RPC starts on iteration
    assert not inspect.iscoroutinefunction(AsyncClient.operation)  # no I/O until polled


def test_streams() -> None:
    assert_twins(CompletionStream, AsyncCompletionStream, async_only=frozenset({"aclose"}))
    assert inspect.iscoroutinefunction(AsyncCompletionStream.aclose)
    assert not inspect.iscoroutinefunction(AsyncCompletionStream.close)  # a sync close() must keep closing
    assert inspect.iscoroutinefunction(AsyncCompletionStream.get_final)


def test_operations() -> None:
    assert_twins(Operation, AsyncOperation)
    for name in ("poll", "wait", "result", "cancel"):
        assert inspect.iscoroutinefunction(getattr(AsyncOperation, name)), name


@pytest.mark.parametrize("cls", [Credentials, ApiKey, IamToken, IamTokenProvider, MetadataService, ServiceAccountKey])
def test_credentials_offer_both_flavours(cls: type) -> None:
    """One object serves both clients: `authorization()` and its `a`-prefixed twin, same parameters."""
    sync, asyn = cls.authorization, cls.aauthorization
    assert _params(sync) == _params(asyn)
    assert not inspect.iscoroutinefunction(sync) and inspect.iscoroutinefunction(asyn)
    assert _norm(inspect.signature(sync).return_annotation) == _norm(inspect.signature(asyn).return_annotation)


def test_batch() -> None:
    """run_batch builds its AsyncClient from **client_kwargs; arun_batch takes one (and test clocks)."""
    sync = {p[0]: p for p in _params(run_batch)}
    asyn = {p[0]: p for p in _params(arun_batch)}
    assert set(sync) - set(asyn) == {"client_kwargs"}
    assert set(asyn) - set(sync) == {"client", "clock", "sleep"}
    for name in set(sync) & set(asyn):
        assert sync[name] == asyn[name], name
    assert inspect.iscoroutinefunction(arun_batch) and not inspect.iscoroutinefunction(run_batch)


def test_async_names_follow_one_convention() -> None:
    """Every public asyncio class is Async<Name> of a blocking twin; every coroutine function starts with a."""
    for name in yandexgpt_grpc.__all__:
        obj = getattr(yandexgpt_grpc, name)
        if isinstance(obj, type) and name.startswith("Async"):
            assert hasattr(yandexgpt_grpc, name[len("Async") :]), name
        elif inspect.iscoroutinefunction(obj):
            assert name.startswith("a") and hasattr(yandexgpt_grpc, name[1:]), name
