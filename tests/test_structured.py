"""Structured output (json_object / json_schema / pydantic) and reasoning, on both clients."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from yandexgpt_grpc import Message
from yandexgpt_grpc.testing import Emulator, OperationScript, Reply

from .conftest import Harness
from .test_operations import op_call
from .test_tools import rejected_before_io

MODEL = "yandexgpt-lite"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "role": {"type": "string", "enum": ["admin", "user"]},
    },
    "required": ["name", "age", "tags", "role"],
}


async def test_json_object(harness: Harness, emu: Emulator) -> None:
    result = await harness.complete(MODEL, "Answer in JSON", response_format="json")
    req = emu.calls[0].request
    assert req.WhichOneof("ResponseFormat") == "json_object" and req.json_object
    assert result.json() == {"answer": 'You said: "Answer in JSON". This is the emulator answering.'}


async def test_json_schema(harness: Harness, emu: Emulator) -> None:
    result = await harness.complete(MODEL, "Who is it?", response_format=PERSON)
    req = emu.calls[0].request
    assert req.WhichOneof("ResponseFormat") == "json_schema"
    assert json_format.MessageToDict(req.json_schema.schema) == PERSON
    assert result.json() == {"name": "sample name", "age": 1, "tags": ["sample tags"], "role": "admin"}


@pytest.mark.parametrize(
    "fmt",
    [
        {"json_schema": PERSON},
        {"json_schema": {"schema": PERSON}},  # as the REST body nests it
        {"jsonSchema": {"schema": PERSON}},
    ],
)
async def test_json_schema_wrapped_forms(harness: Harness, emu: Emulator, fmt: dict[str, Any]) -> None:
    await harness.complete(MODEL, "hi", response_format=fmt)
    assert json_format.MessageToDict(emu.calls[0].request.json_schema.schema) == PERSON


@pytest.mark.parametrize("fmt", ["json_object", "JSON", {"json_object": True}, {"jsonObject": True}])
async def test_json_object_spellings(harness: Harness, emu: Emulator, fmt: Any) -> None:
    await harness.complete(MODEL, "hi", response_format=fmt)
    assert emu.calls[0].request.json_object


@pytest.mark.parametrize("fmt", ["text", {"json_object": False}])
async def test_plain_text_format_sends_nothing(harness: Harness, emu: Emulator, fmt: Any) -> None:
    await harness.complete(MODEL, "hi", response_format=fmt)
    assert emu.calls[0].request.WhichOneof("ResponseFormat") is None


async def test_pydantic_model(harness: Harness, emu: Emulator) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Person(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        name: str
        age: int

    result = await harness.complete(MODEL, "Who?", response_format=Person)
    sent = json_format.MessageToDict(emu.calls[0].request.json_schema.schema)
    assert sent == Person.model_json_schema()
    person = Person.model_validate(result.json())
    assert (person.name, person.age) == ("sample name", 1)


async def test_json_in_a_stream_and_an_operation(harness: Harness, emu: Emulator) -> None:
    alts, stream = await harness.collect(MODEL, "hi", response_format=PERSON)
    assert stream.final.json()["role"] == "admin" and len(alts) > 1
    emu.enqueue("AsyncCompletion", OperationScript(done_after_polls=0))
    op = await harness.call("submit", MODEL, "hi", response_format="json")
    assert op.done
    assert set((await op_call(op, "result")).json()) == {"answer"}


async def test_json_error_is_clear(harness: Harness, emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=['{"answer": "cut o']))
    result = await harness.complete(MODEL, "hi", response_format="json")
    with pytest.raises(ValueError, match=r"not valid JSON \(Unterminated string.*'\{\"answer\": \"cut o'"):
        result.json()


# -- reasoning -------------------------------------------------------------------------------------


async def test_reasoning_tokens(harness: Harness, emu: Emulator) -> None:
    messages = [Message.system("Think"), Message.user("What is 17 * 23?")]
    hidden = await harness.complete(MODEL, messages, reasoning_mode="enabled_hidden")
    plain = await harness.complete(MODEL, messages, reasoning_mode="disabled")
    assert [c.request.completion_options.reasoning_options.mode for c in emu.calls] == [2, 1]
    assert hidden.usage.reasoning_tokens == 8 + hidden.usage.input_tokens // 2
    assert plain.usage.reasoning_tokens == 0
    assert hidden.usage.completion_tokens == plain.usage.completion_tokens + hidden.usage.reasoning_tokens
    assert hidden.usage.total_tokens == hidden.usage.input_tokens + hidden.usage.completion_tokens
    assert hidden.text == plain.text  # the reasoning stays hidden


async def test_reasoning_tokens_in_a_stream(harness: Harness) -> None:
    _, stream = await harness.collect(MODEL, "hi", reasoning_mode="ENABLED_HIDDEN")
    assert stream.final.usage.reasoning_tokens > 0


# -- validation before any I/O ---------------------------------------------------------------------


class _Opaque:
    """A class pydantic cannot describe."""


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"response_format": "yaml"}, ValueError, "unknown response_format 'yaml'"),
        ({"response_format": ["type", "object"]}, TypeError, "must be a JSON object"),
        ({"response_format": 42}, TypeError, "must be a JSON object"),
        ({"response_format": {"json_schema": "object"}}, TypeError, "must be a JSON object"),
        ({"response_format": {"json_object": True, "json_schema": PERSON}}, ValueError, "exclude each other"),
        ({"response_format": {"json_schema": PERSON, "strict": True}}, ValueError, "unexpected keys"),
        ({"response_format": {"json_object": "yes"}}, TypeError, "json_object must be a bool"),
        ({"response_format": {"type": "object", "default": {1}}}, TypeError, "is not a JSON value"),
        ({"response_format": {1: "x"}}, TypeError, "keys must be str"),
        ({"response_format": _Opaque}, TypeError, "pydantic cannot describe _Opaque.*pass a JSON-schema dict"),
        ({"reasoning_mode": "enabled_visible"}, ValueError, "reasoning_mode must be one of"),
        ({"reasoning_mode": 1}, ValueError, "reasoning_mode must be one of"),
    ],
)
async def test_bad_format_rejected_before_io(
    harness: Harness, emu: Emulator, options: dict[str, Any], error: type, match: str
) -> None:
    await rejected_before_io(harness, emu, options, error, match)
