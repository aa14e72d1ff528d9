"""The emulator's rules that LangChain's standard suites lean on: a tool the prompt names is called, with
the arguments written in the prompt, and JSON mode answers with the keys the prompt asks for."""

from __future__ import annotations

from typing import Any

import pytest

from yandexgpt_grpc import AlternativeStatus, FunctionTool

from .conftest import Harness

MODEL = "yandexgpt-lite"
ADD = FunctionTool(
    "add_numbers",
    "Add two numbers.",
    {
        "type": "object",
        "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}, "note": {"type": "string"}},
        "required": ["a", "b"],
    },
)
CUSTOMER = FunctionTool(
    "create_customer",
    "Create a customer.",
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "city": {"type": "string"}, "vip": {"type": "boolean"}},
        "required": ["name", "city"],
    },
)


async def test_a_call_written_in_the_prompt(harness: Harness) -> None:
    result = await harness.complete(MODEL, "What is add_numbers(3, 4)?", tools=[CUSTOMER, ADD])
    assert result.status is AlternativeStatus.TOOL_CALLS
    [call] = result.tool_calls
    assert call.name == "add_numbers" and call.arguments == {"a": 3, "b": 4}  # in `required` order


async def test_a_tool_named_by_its_words(harness: Harness) -> None:
    result = await harness.complete(
        MODEL, "Please create a new customer named 'Zoë' from \"Köln\"", tools=[ADD, CUSTOMER]
    )
    [call] = result.tool_calls
    assert call.name == "create_customer" and call.arguments == {"name": "Zoë", "city": "Köln"}


@pytest.mark.parametrize(
    ("prompt", "options"),
    [
        ("Hello there", {}),  # names no tool
        ("What's the customer count?", {}),  # "create" is missing; the apostrophe is no quote
        ("add_numbers(1, 2)", {"tool_choice": "none"}),
    ],
)
async def test_no_call(harness: Harness, prompt: str, options: dict[str, Any]) -> None:
    result = await harness.complete(MODEL, prompt, tools=[ADD, CUSTOMER], **options)
    assert result.status is AlternativeStatus.FINAL and not result.tool_calls


async def test_required_prefers_the_named_tool(harness: Harness) -> None:
    named = await harness.complete(
        MODEL, "create customer 'Ann', 'Oslo'", tools=[ADD, CUSTOMER], tool_choice="required"
    )
    assert named.tool_calls[0].name == "create_customer"
    assert named.tool_calls[0].arguments == {"name": "Ann", "city": "Oslo"}
    first = await harness.complete(MODEL, "anything", tools=[ADD, CUSTOMER], tool_choice="required")
    assert first.tool_calls[0].name == "add_numbers" and first.tool_calls[0].arguments == {"a": 1, "b": 1}


async def test_json_mode_keys_from_the_prompt(harness: Harness) -> None:
    asked = await harness.complete(MODEL, "Answer as JSON with 'city' and \"temp\" keys.", response_format="json")
    assert asked.json() == {"city": "sample city", "temp": "sample temp"}
    plain = await harness.complete(MODEL, "Answer as JSON about 'Oslo'.", response_format="json")
    assert set(plain.json()) == {"answer"}
