"""What a user reads: help() lists every argument and option; statuses print as names; aclose()."""

from __future__ import annotations

import inspect
import pydoc

import pytest

from yandexgpt_grpc import AlternativeStatus, AsyncClient, Client
from yandexgpt_grpc._convert import GenerationOptions
from yandexgpt_grpc._docs import OPTIONS
from yandexgpt_grpc.testing import Emulator

from .conftest import API_KEY, FOLDER

OPTION_METHODS = ("complete", "stream", "submit", "tokenize_messages")


def test_the_options_table_covers_every_generation_option() -> None:
    assert list(OPTIONS) == list(GenerationOptions.__annotations__)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize("method", OPTION_METHODS)
def test_help_of_each_generating_method_lists_every_option(cls: type, method: str) -> None:
    fn = getattr(cls, method)
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    for name, (meaning, default) in OPTIONS.items():
        assert f"{name}: {meaning} (default: {default})." in text, name
    for arg in ("model", "messages", "timeout", "metadata", "retry"):
        assert f"    {arg}: " in inspect.getdoc(fn), arg  # type: ignore[operator]
    # mypy and IDEs still see the options as typed keywords, not a bare **kwargs.
    assert "Unpack[GenerationOptions]" in str(inspect.signature(fn).parameters["options"].annotation)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_help_of_the_client_documents_every_constructor_argument(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "see ClientBase" not in text
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert len(params) == 14
    for name in params:
        assert f"    {name}: " in (cls.__doc__ or ""), name
    for env in ("YANDEXGPT_ENDPOINT", "YC_FOLDER_ID", "YC_API_KEY", "YC_IAM_TOKEN"):
        assert env in (cls.__doc__ or ""), env


def test_status_prints_as_its_name_on_every_python() -> None:
    status = AlternativeStatus.FINAL
    assert str(status) == f"{status}" == format(status) == "FINAL"
    assert repr(status) == "<AlternativeStatus.FINAL: 3>"
    assert f"{status:>7}" == "  FINAL" and f"{status:d}" == "3" and status == 3


async def test_async_client_aclose(emu: Emulator) -> None:
    client = AsyncClient(emu.address, insecure=True, api_key=API_KEY, folder_id=FOLDER)
    assert (await client.complete("yandexgpt-lite", "hi")).text
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.complete("yandexgpt-lite", "hi")
    await client.aclose()  # twice is fine
    await client.close()  # the old name still works, still a coroutine
