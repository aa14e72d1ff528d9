"""The emulator refuses what the real API refuses: unknown or malformed model URIs, empty message text.

Driven through the raw generated stubs (every method that takes a model URI) and through both clients.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from yandexgpt_grpc import InvalidArgumentError
from yandexgpt_grpc._generated.yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as tg_pb2,
)
from yandexgpt_grpc.testing import DEFAULT_MODELS, MODEL_VERSIONS, Emulator, Reply

from .conftest import Harness
from .test_emulator import AUTH, Stubs, make_request, rpc_error

INVALID = "invalid model_uri"


def _tokenize(stubs: Stubs, uri: str) -> object:
    return stubs.tok.Tokenize(tg_pb2.TokenizeRequest(model_uri=uri, text="Hello"), metadata=AUTH, timeout=5)


def _calls(stubs: Stubs, request: tg_pb2.CompletionRequest) -> dict[str, object]:
    """Every emulated method that takes a model URI, as a thunk."""
    stream = tg_pb2.CompletionRequest()
    stream.CopyFrom(request)
    stream.completion_options.stream = True
    return {
        "Completion": lambda: stubs.complete(request),
        "Completion(stream)": lambda: stubs.complete(stream),
        "AsyncCompletion": lambda: stubs.async_gen.Completion(request, metadata=AUTH, timeout=5),
        "TokenizeCompletion": lambda: stubs.tok.TokenizeCompletion(request, metadata=AUTH, timeout=5),
        "Tokenize": lambda: _tokenize(stubs, request.model_uri),
    }


@pytest.fixture
def stubs(yandexgpt_emulator: Emulator) -> Iterator[Stubs]:
    with grpc.insecure_channel(yandexgpt_emulator.address) as channel:
        yield Stubs(channel)


def test_default_models_are_the_public_list() -> None:
    assert "yandexgpt-lite" in DEFAULT_MODELS
    assert "yandexgpt" in DEFAULT_MODELS
    assert MODEL_VERSIONS == ("latest", "rc", "deprecated")
    assert Emulator().models == frozenset(DEFAULT_MODELS)


@pytest.mark.parametrize(
    "uri",
    [
        "gpt://b1gfolder/yandexgtp-lite/latest",  # a typo
        "gpt://b1gfolder/gpt-4o/latest",
        "gpt://b1gfolder/gpt-4o",
        "gpt://b1gfolder/yandexgpt-lite/v2",  # not a branch
        "gpt://b1gfolder/yandexgpt-lite/latest/extra",
        "gpt://b1gfolder/yandexgpt-lite/latest@",
        "gpt://b1gfolder",
        "gpt:///yandexgpt-lite/latest",
        "yandexgpt-lite",
        "https://llm.api.cloud.yandex.net/yandexgpt-lite",
        "",
    ],
)
def test_unknown_or_malformed_model_uri_refused_by_every_method(stubs: Stubs, emu: Emulator, uri: str) -> None:
    emu.enqueue("Completion", Reply(chunks=["scripted"]))
    for name, call in _calls(stubs, make_request(uri=uri)).items():
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert err.details() == INVALID, name
    assert {c.code for c in emu.calls} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert emu.pending("Completion") == 1  # a refused request consumes no script entry


@pytest.mark.parametrize("name", DEFAULT_MODELS)
@pytest.mark.parametrize("version", [None, *MODEL_VERSIONS])
def test_every_listed_model_and_branch_accepted(stubs: Stubs, name: str, version: str | None) -> None:
    uri = f"gpt://b1gfolder/{name}" + (f"/{version}" if version else "")
    for label, call in _calls(stubs, make_request(uri=uri)).items():
        result = call()
        if label.startswith("Completion"):
            assert isinstance(result, list)
            assert result[-1].alternatives[0].message.text, label


@pytest.mark.parametrize(
    "uri", ["gpt://b1gfolder/yandexgpt-lite/latest@tamr1abc", "ds://bt1abc/deployment", "ds://bt1abc"]
)
def test_fine_tuned_and_datasphere_uris_accepted(stubs: Stubs, uri: str) -> None:
    assert stubs.complete(make_request(uri=uri))[-1].alternatives[0].message.text


def test_models_none_accepts_any_name(yandexgpt_emulator_factory) -> None:
    emu = yandexgpt_emulator_factory(models=None)
    assert emu.models is None
    with grpc.insecure_channel(emu.address) as channel:
        stubs = Stubs(channel)
        for call in _calls(stubs, make_request(uri="gpt://b1gfolder/gpt-4o/latest")).values():
            call()
        # the URI must still have the gpt://<folder>/<name>[/<branch>] shape
        err = rpc_error(stubs.complete, make_request(uri="gpt-4o"))
        assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, INVALID)


def test_custom_model_list(yandexgpt_emulator_factory) -> None:
    emu = yandexgpt_emulator_factory(models=["my-model"])
    with grpc.insecure_channel(emu.address) as channel:
        stubs = Stubs(channel)
        assert stubs.complete(make_request(uri="gpt://b1gfolder/my-model/rc"))
        err = rpc_error(stubs.complete, make_request(uri="gpt://b1gfolder/yandexgpt-lite/latest"))
        assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, INVALID)


def test_models_given_as_one_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="list of model names"):
        Emulator(models="yandexgpt-lite")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_message_text_refused(stubs: Stubs, emu: Emulator, text: str) -> None:
    request = make_request(text)
    for name, call in _calls(stubs, request).items():
        if name == "Tokenize":  # tokenizing empty text is not a completion; see the next test
            continue
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert err.details().startswith("messages[0].text is empty"), name
    # an empty assistant or system message is refused as well, with its index
    request = make_request("Hello")
    request.messages.add(role="assistant", text=text)
    err = rpc_error(stubs.complete, request)
    assert err.details().startswith("messages[1].text is empty")
    content_less = make_request("Hello")
    content_less.messages.add(role="user")
    assert rpc_error(stubs.complete, content_less).details().startswith("messages[1].text is empty")


def test_tokenize_of_empty_text_is_an_empty_list(stubs: Stubs) -> None:
    response = stubs.tok.Tokenize(
        tg_pb2.TokenizeRequest(model_uri="gpt://b1gfolder/yandexgpt-lite/latest", text=""), metadata=AUTH, timeout=5
    )
    assert list(response.tokens) == []


# -- through the clients ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["yandexgtp-lite", "gpt-4o", "yandexgpt-lite/v9"])
async def test_client_sees_unknown_model_as_invalid_argument(harness: Harness, emu: Emulator, model: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await harness.complete(model, "Hello")
    assert info.value.details == INVALID
    with pytest.raises(InvalidArgumentError):
        await harness.collect(model, "Hello")
    with pytest.raises(InvalidArgumentError):
        await harness.call("tokenize", model, "Hello")
    assert len(emu.calls) == 3  # INVALID_ARGUMENT is never retried


async def test_client_with_a_listed_model_succeeds(harness: Harness) -> None:
    result = await harness.complete("yandexgpt/rc", "Hello")
    assert result.text.startswith('You said: "Hello".')
