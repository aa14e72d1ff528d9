"""Function calling: tool schemas from functions, the request fields, and the round trip on both clients."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Optional

import pytest
from google.protobuf import json_format

from yandexgpt_grpc import AlternativeStatus, FunctionTool, Message, ToolCall, ToolResult, function_tool
from yandexgpt_grpc._tools import parse_docstring
from yandexgpt_grpc.testing import Emulator, Reply

from .conftest import Harness

MODEL = "yandexgpt-lite"


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_weather(city: str, days: int, unit: Unit = Unit.CELSIUS) -> dict[str, Any]:
    """Get the weather forecast for a city.

    Args:
        city: The city, e.g. "Moscow".
        days (int): How many days ahead,
            from 1 to 7.
        unit: Temperature unit.

    Returns:
        The forecast.
    """
    return {"city": city, "days": days, "unit": unit.value, "forecast": "sunny"}


# -- schemas from Python functions -----------------------------------------------------------------


def test_schema_from_signature_and_google_docstring() -> None:
    tool = FunctionTool.from_function(get_weather)
    assert tool.name == "get_weather" and tool.description == "Get the weather forecast for a city."
    assert tool.strict is False and tool.function is get_weather
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'The city, e.g. "Moscow".'},
            "days": {"type": "integer", "description": "How many days ahead, from 1 to 7."},
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "description": "Temperature unit.",
                "default": "celsius",
            },
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    }


def test_type_mapping() -> None:
    def f(
        a: str,
        b: float,
        c: bool,
        d: list[int],
        e: dict[str, float],
        g: Literal["x", "y"],
        h: Optional[int] = None,  # noqa: UP045 - the old spelling must work too
        i: str | None = None,
        j: tuple[int, str] = (1, "a"),
        k: tuple[float, ...] = (),
        m: set[str] | None = None,
        n: Annotated[int, "how many"] = 3,
        o: Any = None,
        p: list[str] | int = 0,
        q: dict = {},  # noqa: B006
        r=1,
        *args: int,
        **kwargs: Any,
    ) -> None:
        pass

    props = FunctionTool.from_function(f).parameters["properties"]
    assert props["a"] == {"type": "string"}
    assert props["b"] == {"type": "number"}
    assert props["c"] == {"type": "boolean"}
    assert props["d"] == {"type": "array", "items": {"type": "integer"}}
    assert props["e"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props["g"] == {"type": "string", "enum": ["x", "y"]}
    assert props["h"] == {"type": ["integer", "null"], "default": None}
    assert props["i"] == {"type": ["string", "null"], "default": None}
    assert props["j"] == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
        "default": [1, "a"],
    }
    assert props["k"] == {"type": "array", "items": {"type": "number"}, "default": []}
    assert props["m"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}, "uniqueItems": True}, {"type": "null"}],
        "default": None,
    }
    assert props["n"] == {"type": "integer", "description": "how many", "default": 3}
    assert props["o"] == {"default": None}
    assert props["p"] == {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "integer"}], "default": 0}
    assert props["q"] == {"type": "object", "default": {}}
    assert props["r"] == {"default": 1}
    schema = FunctionTool.from_function(f).parameters
    assert schema["required"] == ["a", "b", "c", "d", "e", "g"]
    assert "args" not in props and "kwargs" not in props
    assert "additionalProperties" not in schema  # **kwargs takes anything else


def test_numpy_and_sphinx_docstrings() -> None:
    numpy_doc = (
        "Add numbers.\n\nParameters\n----------\na : int\n    The first.\nb : int\n    The second,\n    really.\n"
        "\nReturns\n-------\nint\n    The sum."
    )
    assert parse_docstring(numpy_doc) == ("Add numbers.", {"a": "The first.", "b": "The second, really."})
    sphinx_doc = "Add numbers.\n\n:param a: The first.\n:param int b: The second.\n:returns: The sum."
    assert parse_docstring(sphinx_doc) == ("Add numbers.", {"a": "The first.", "b": "The second."})
    assert parse_docstring("") == ("", {})
    assert parse_docstring("One line.") == ("One line.", {})


def test_decorator_forms_and_overrides() -> None:
    @function_tool
    def ping(host: str) -> str:
        """Ping a host."""
        return f"pong {host}"

    @function_tool(name="lookup_user", description="Find a user by id.", strict=True)
    def find(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    assert isinstance(ping, FunctionTool) and ping.description == "Ping a host."
    assert ping("example.org") == "pong example.org"  # still callable
    assert (find.name, find.description, find.strict) == ("lookup_user", "Find a user by id.", True)
    assert find.invoke(ToolCall("lookup_user", {"user_id": 7})) == ToolResult("lookup_user", '{"id": 7}')
    assert function_tool(ping.function, name="ping2").name == "ping2"


def test_invoke_turns_enum_values_back_into_members() -> None:
    tool = function_tool(get_weather)
    result = tool.invoke(ToolCall("get_weather", {"city": "Oslo", "days": 2, "unit": "fahrenheit"}))
    assert result.name == "get_weather"
    assert result.content == '{"city": "Oslo", "days": 2, "unit": "fahrenheit", "forecast": "sunny"}'
    with pytest.raises(ValueError, match="not 'get_weather'"):
        tool.invoke(ToolCall("other", {}))
    schema_only = FunctionTool("x", "X.", {"type": "object", "properties": {}})
    with pytest.raises(TypeError, match="no function"):
        schema_only.invoke(ToolCall("x", {}))


class Opaque:
    pass


def test_what_cannot_become_a_tool() -> None:
    class Local:
        pass

    def local_type(x: Local) -> None:  # a string annotation (PEP 563) naming a local class
        pass

    def bad_type(x: Opaque) -> None:
        pass

    def positional(x: int, /) -> None:
        pass

    def bad_keys(x: dict[int, str]) -> None:
        pass

    with pytest.raises(TypeError, match="cannot derive a JSON schema from Opaque"):
        function_tool(bad_type)
    with pytest.raises(TypeError, match=r"cannot resolve the type hints of .*local_type"):
        function_tool(local_type)
    with pytest.raises(TypeError, match="positional-only"):
        function_tool(positional)
    with pytest.raises(TypeError, match="keys are strings"):
        function_tool(bad_keys)
    with pytest.raises(ValueError, match="pass name="):
        function_tool(lambda x: x)
    assert function_tool(lambda x: x, name="echo").parameters["required"] == ["x"]
    with pytest.raises(ValueError, match="non-empty str without spaces"):
        FunctionTool("two words")
    with pytest.raises(TypeError, match="must be a JSON object"):
        FunctionTool("t", parameters=["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a JSON value"):
        FunctionTool("t", parameters={"type": "object", "default": {1, 2}})
    with pytest.raises(TypeError, match="strict must be a bool"):
        FunctionTool("t", strict="yes")  # type: ignore[arg-type]


# -- the request -----------------------------------------------------------------------------------


async def test_tools_in_the_request(harness: Harness, emu: Emulator) -> None:
    schema_tool = FunctionTool(
        "search", "Search the web.", {"type": "object", "properties": {"q": {"type": "string"}}}, strict=True
    )
    dict_tool = {"name": "clock", "description": "The time.", "parameters": {"type": "object", "properties": {}}}
    openai_style = {"type": "function", "function": {"name": "noop"}}
    await harness.complete(
        MODEL,
        "hi",
        tools=[get_weather, schema_tool, dict_tool, openai_style],
        tool_choice="auto",
        parallel_tool_calls=False,
    )
    req = emu.calls[0].request
    assert [t.function.name for t in req.tools] == ["get_weather", "search", "clock", "noop"]
    fn = req.tools[0].function
    assert fn.description == "Get the weather forecast for a city." and not fn.strict
    assert json_format.MessageToDict(fn.parameters) == FunctionTool.from_function(get_weather).parameters
    assert req.tools[1].function.strict
    assert json_format.MessageToDict(req.tools[3].function.parameters) == {"type": "object", "properties": {}}
    assert req.tool_choice.WhichOneof("ToolChoice") == "mode" and req.tool_choice.mode == 2  # AUTO
    assert req.HasField("parallel_tool_calls") and req.parallel_tool_calls.value is False


@pytest.mark.parametrize(("choice", "mode"), [("none", 1), ("AUTO", 2), ("required", 3)])
async def test_tool_choice_modes(harness: Harness, emu: Emulator, choice: str, mode: int) -> None:
    await harness.complete(MODEL, "hi", tools=[get_weather], tool_choice=choice)
    assert emu.calls[0].request.tool_choice.mode == mode


async def test_plain_call_sends_no_tool_fields(harness: Harness, emu: Emulator) -> None:
    await harness.complete(MODEL, "hi", temperature=0.3)
    req = emu.calls[0].request
    assert not req.tools and not req.HasField("tool_choice") and not req.HasField("parallel_tool_calls")
    assert req.WhichOneof("ResponseFormat") is None


# -- the round trip ------------------------------------------------------------------------------


async def test_round_trip(harness: Harness, emu: Emulator) -> None:
    """Model asks for a tool -> arguments as a dict -> the result goes back -> the answer uses it."""
    tools = {t.name: t for t in (function_tool(get_weather),)}
    messages: list[Message] = [Message.user("Weather in Moscow for two days?")]
    first = await harness.complete(MODEL, messages, tools=list(tools.values()), tool_choice="get_weather")
    assert first.status is AlternativeStatus.TOOL_CALLS and first.text == ""
    [call] = first.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {"city": "sample city", "days": 1}  # the emulator fills required arguments
    assert type(call.arguments["days"]) is int  # whole numbers come back as int, as from JSON

    messages += [first.message, Message.with_tool_results([tools[c.name].invoke(c) for c in first.tool_calls])]
    final = await harness.complete(MODEL, messages, tools=list(tools.values()))
    assert final.status is AlternativeStatus.FINAL
    assert "get_weather" in final.text and "sunny" in final.text and "sample city" in final.text

    second = emu.calls[1].request
    assert [m.WhichOneof("Content") for m in second.messages] == ["text", "tool_call_list", "tool_result_list"]
    assert second.messages[1].role == "assistant"
    sent_call = second.messages[1].tool_call_list.tool_calls[0].function_call
    assert sent_call.name == "get_weather" and json_format.MessageToDict(sent_call.arguments)["city"] == "sample city"
    assert second.messages[2].tool_result_list.tool_results[0].function_result.name == "get_weather"


async def test_scripted_parallel_calls(harness: Harness, emu: Emulator) -> None:
    emu.enqueue(
        "Completion",
        Reply(
            status="TOOL_CALLS",
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Oslo", "days": 3, "unit": "fahrenheit"}},
                {"name": "get_weather", "arguments": {"city": "Rome", "days": 1.5, "nested": {"n": [1, 2.5]}}},
            ],
        ),
    )
    result = await harness.complete(
        MODEL, "Oslo and Rome?", tools=[get_weather], tool_choice="auto", parallel_tool_calls=True
    )
    assert [c.arguments for c in result.tool_calls] == [
        {"city": "Oslo", "days": 3, "unit": "fahrenheit"},
        {"city": "Rome", "days": 1.5, "nested": {"n": [1, 2.5]}},
    ]
    answers = [
        Message.tool_result("get_weather", "snow in Oslo"),
        Message.tool_result("get_weather", {"Rome": "sun"}),
    ]
    final = await harness.complete(
        MODEL,
        [
            Message.user("Oslo and Rome?"),
            result.message,
            Message.with_tool_results([r for m in answers for r in m.tool_results]),
        ],
    )
    assert final.text == 'Tool results: get_weather: snow in Oslo; get_weather: {"Rome": "sun"}.'


async def test_required_calls_the_first_tool_when_streaming(harness: Harness) -> None:
    def ping(host: str) -> str:
        """Ping a host."""
        return host

    alts, _ = await harness.collect(MODEL, "hi", tools=[ping, get_weather], tool_choice="required")
    final = alts[-1]
    assert final.status is AlternativeStatus.TOOL_CALLS
    assert final.tool_calls == (ToolCall("ping", {"host": "sample host"}),)
    assert final.message == Message("assistant", "", tool_calls=final.tool_calls)


# -- validation before any I/O -------------------------------------------------------------------


async def rejected_before_io(harness: Harness, emu: Emulator, options: dict[str, Any], error: type, match: str) -> None:
    """Every method that takes generation options refuses `options` before sending anything."""
    with pytest.raises(error, match=match):
        await harness.complete(MODEL, "hi", **options)
    with pytest.raises(error, match=match):
        harness.stream(MODEL, "hi", **options)
    with pytest.raises(error, match=match):
        await harness.call("submit", MODEL, "hi", **options)
    with pytest.raises(error, match=match):
        await harness.call("tokenize_messages", MODEL, "hi", **options)
    assert emu.calls == []


def _noop() -> None:
    """Do nothing."""


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"tool_choice": "sometimes"}, ValueError, "unknown tool_choice 'sometimes'"),
        ({"tools": [_noop], "tool_choice": "get_weather"}, ValueError, "names no declared tool; declared: '_noop'"),
        ({"tool_choice": "required"}, ValueError, "needs tools"),
        ({"tool_choice": 3}, TypeError, "tool_choice must be"),
        ({"tools": _noop}, TypeError, "tools must be a list"),
        ({"tools": [_noop, _noop]}, ValueError, "already named '_noop'"),
        ({"tools": [{"description": "no name"}]}, ValueError, r"tools\[0\]: a tool dict needs 'name'"),
        ({"tools": [{"name": "x", "schema": {}}]}, ValueError, "unsupported tool keys"),
        ({"tools": [{"name": "x", "parameters": "object"}]}, TypeError, "must be a JSON object"),
        ({"tools": [42]}, TypeError, r"tools\[0\]: expected a FunctionTool"),
        ({"tools": [_noop], "parallel_tool_calls": "yes"}, TypeError, "parallel_tool_calls must be a bool"),
    ],
)
async def test_bad_tool_options_rejected_before_io(
    harness: Harness, emu: Emulator, options: dict[str, Any], error: type, match: str
) -> None:
    await rejected_before_io(harness, emu, options, error, match)


async def test_tool_choice_accepts_the_tool_itself(harness: Harness, emu: Emulator) -> None:
    tool = function_tool(get_weather)
    result = await harness.complete(MODEL, "hi", tools=[tool], tool_choice=tool)
    assert emu.calls[0].request.tool_choice.function_name == "get_weather"
    assert result.tool_calls[0].name == "get_weather"
