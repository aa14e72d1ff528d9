"""response_format= takes any type pydantic's TypeAdapter describes; tool_choice= takes the REST dict form.

On both clients; mistakes are refused before any I/O, naming what is supported.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Literal

import pydantic
import pytest
from google.protobuf import json_format
from typing_extensions import TypedDict

from yandexgpt_grpc import AlternativeStatus
from yandexgpt_grpc.testing import Emulator

from .conftest import Harness
from .test_tools import get_weather, rejected_before_io

MODEL = "yandexgpt-lite"


@pydantic.dataclasses.dataclass
class Numbers:
    values: list[int]
    label: str


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Movie(TypedDict):
    title: str
    year: int


@pytest.mark.parametrize("fmt", [Numbers, Point, Movie], ids=["pydantic-dataclass", "dataclass", "TypedDict"])
async def test_object_types(harness: Harness, emu: Emulator, fmt: Any) -> None:
    adapter = pydantic.TypeAdapter(fmt)
    result = await harness.complete(MODEL, "Fill it in", response_format=fmt)
    sent = json_format.MessageToDict(emu.calls[0].request.json_schema.schema)
    assert sent == adapter.json_schema()
    value = adapter.validate_python(result.json())  # the emulator's answer follows the schema
    assert value is not None


@pytest.mark.parametrize(
    "fmt", [list[int], dict[str, float], Literal["yes", "no"], int | None], ids=["list", "dict", "Literal", "Optional"]
)
async def test_other_types_send_their_schema(harness: Harness, emu: Emulator, fmt: Any) -> None:
    await harness.complete(MODEL, "hi", response_format=fmt)
    sent = json_format.MessageToDict(emu.calls[0].request.json_schema.schema)
    assert sent == pydantic.TypeAdapter(fmt).json_schema()


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("fmt", "match"),
    [
        (_Opaque, r"pydantic cannot describe _Opaque \(Unable to generate pydantic-core schema"),
        (list[_Opaque], r"pydantic cannot describe list\[.*_Opaque\]"),
    ],
)
async def test_unsupported_type_says_what_is_supported(harness: Harness, emu: Emulator, fmt: Any, match: str) -> None:
    supported = "a JSON-schema dict, a pydantic model class, or any type pydantic's TypeAdapter describes"
    await rejected_before_io(harness, emu, {"response_format": fmt}, TypeError, match)
    with pytest.raises(TypeError) as err:
        await harness.complete(MODEL, "hi", response_format=fmt)
    assert supported in str(err.value)


async def test_without_pydantic_the_error_says_to_install_it(
    harness: Harness, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # `import pydantic` now raises ImportError
    await rejected_before_io(
        harness, emu, {"response_format": Point}, TypeError, "Point is not a JSON-schema dict; install pydantic to pass"
    )
    # A JSON-schema dict needs no pydantic.
    await harness.complete(MODEL, "hi", response_format={"type": "object", "properties": {"x": {"type": "number"}}})
    assert emu.calls[0].request.WhichOneof("ResponseFormat") == "json_schema"


# -- tool_choice in the REST API's dict form ----------------------------------------------------------


async def test_tool_choice_rest_dict(harness: Harness, emu: Emulator) -> None:
    def get_time(city: str) -> str:
        """The local time in a city."""
        return "12:00"

    choice = {"type": "function", "function": {"name": "get_time"}}
    result = await harness.complete(MODEL, "hi", tools=[get_weather, get_time], tool_choice=choice)
    assert emu.calls[0].request.tool_choice.function_name == "get_time"
    assert result.status is AlternativeStatus.TOOL_CALLS and result.tool_calls[0].name == "get_time"


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "function", "function": {"name": "get_time"}},  # not among tools
        {"type": "function", "function": {"name": 3}},
        {"type": "function", "name": "get_weather"},
        {"type": "tool", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {}}},
        {"function": {"name": "get_weather"}},
    ],
)
async def test_bad_tool_choice_dict_rejected_before_io(harness: Harness, emu: Emulator, choice: Any) -> None:
    await rejected_before_io(
        harness,
        emu,
        {"tools": [get_weather], "tool_choice": choice},
        ValueError,
        r"tool_choice dict must be \{'type': 'function', 'function': \{'name'",
    )
