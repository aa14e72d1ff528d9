"""The value classes built by `_records.record` behave exactly as `@dataclass(frozen=True)` would.

Each class is compared with a real frozen dataclass of the same fields (made by `make_dataclass`,
which runs dataclasses' own code generation): signature, repr, equality, hashing, the frozen
errors, pickling, `replace`, `asdict`, `match`, subclassing and `__dataclass_params__`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import Any

import grpc
import pytest

from yandexgpt_grpc import (
    AlternativeStatus,
    CompletionResult,
    Message,
    RetryPolicy,
    Token,
    TokenizeResult,
    ToolCall,
    ToolResult,
    Usage,
)
from yandexgpt_grpc._auth_base import Token as BearerToken
from yandexgpt_grpc._auth_base import _Cached
from yandexgpt_grpc._records import FACTORY, record
from yandexgpt_grpc._types import make_alternative

_ALT = make_alternative("hi", "hi", AlternativeStatus.FINAL, 0, False, ())

# class -> keyword arguments giving every field a distinct value (hashable, except where the class is not)
SAMPLES: dict[type, dict[str, Any]] = {
    ToolCall: {"name": "f", "arguments": {"a": 1}},
    ToolResult: {"name": "f", "content": "42"},
    Message: {"role": "assistant", "text": "t", "tool_calls": (), "tool_results": (ToolResult("f", "1"),)},
    Usage: {"input_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "reasoning_tokens": 4},
    CompletionResult: {
        "alternatives": (_ALT,),
        "usage": Usage(1, 2, 3),
        "model_version": "v1",
        "request_id": "rid",
        "trace_id": "tid",
        "raw": None,
        "initial_metadata": (("a", "1"),),
        "trailing_metadata": (("b", b"2"),),
    },
    Token: {"id": 7, "text": "tok", "special": True},
    TokenizeResult: {
        "tokens": (Token(1, "a"),),
        "model_version": "v1",
        "request_id": "r",
        "trace_id": "t",
        "raw": None,
    },
    RetryPolicy: {
        "max_attempts": 3,
        "initial_backoff": 0.25,
        "max_backoff": 4.0,
        "multiplier": 3.0,
        "attempt_timeout": 2.0,
        "max_pushback": 9.0,
        "retry_codes": frozenset({grpc.StatusCode.UNAVAILABLE}),
        "retry_internal": False,
        "rng": None,  # replaced per instance below: a Random is compare=False
    },
    BearerToken: {"value": "secret", "expires_at": 12.5},
    _Cached: {"header": "Bearer x", "expires_at": 2.0, "obtained_at": 1.0},
}
UNHASHABLE = {ToolCall}  # a dict of arguments, as the generated __hash__ would also fail on


def _reference(cls: type) -> type:
    """The same fields through dataclasses' own generated code."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    fields = [
        (
            f.name,
            f.type,
            dataclasses.field(
                default=f.default, default_factory=f.default_factory, repr=f.repr, compare=f.compare, hash=f.hash
            ),
        )
        for f in dataclasses.fields(cls)
    ]
    slots = "__slots__" in cls.__dict__
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, repr=params.repr, slots=slots)


def _kwargs(cls: type) -> dict[str, Any]:
    kwargs = dict(SAMPLES[cls])
    if cls is RetryPolicy:
        kwargs["rng"] = __import__("random").Random(1)
    return kwargs


@pytest.fixture(params=list(SAMPLES), ids=lambda c: c.__qualname__)
def pair(request: pytest.FixtureRequest) -> tuple[type, type]:
    return request.param, _reference(request.param)


def test_signature_matches_the_generated_init(pair: tuple[type, type]) -> None:
    cls, ref = pair
    mine = inspect.signature(cls).parameters
    theirs = inspect.signature(ref).parameters
    assert list(mine) == list(theirs)
    for name, p in mine.items():
        q = theirs[name]
        assert p.kind == q.kind, name
        if q.default is dataclasses.MISSING or repr(q.default) == "<factory>":
            assert repr(p.default) == repr(q.default), name
        else:
            assert p.default == q.default, name
    assert cls.__match_args__ == ref.__match_args__  # type: ignore[attr-defined]
    # `-> None` as the generated __init__ has it, not the string of a `from __future__` annotation
    assert inspect.signature(cls).return_annotation is inspect.signature(ref).return_annotation is None
    assert str(inspect.signature(cls)) == str(inspect.signature(ref))
    if cls.__doc__.startswith(f"{cls.__name__}("):  # no docstring: dataclass writes the signature there
        assert cls.__doc__ == ref.__doc__


def test_every_field_is_set_from_its_argument(pair: tuple[type, type]) -> None:
    cls, ref = pair
    kwargs = _kwargs(cls)
    positional = cls(*kwargs.values())
    assert _values(positional) == _values(cls(**kwargs)) == _values(ref(**kwargs)) == tuple(kwargs.values())


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))


def test_repr_eq_and_hash_match(pair: tuple[type, type]) -> None:
    cls, ref = pair
    kwargs = _kwargs(cls)
    a, b, r = cls(**kwargs), cls(**kwargs), ref(**kwargs)
    if cls.__dataclass_params__.repr:  # type: ignore[attr-defined]
        assert repr(a) == repr(r)
    else:
        assert repr(a).startswith(("<", "Token(<redacted>")) and "secret" not in repr(a)
    assert a == b
    assert (a != b) is False
    assert a != r  # another class: NotImplemented both ways, as for two dataclasses
    assert (a == object()) is False
    if cls not in UNHASHABLE:
        assert hash(a) == hash(b) == hash(r)
    else:
        with pytest.raises(TypeError):
            hash(a)
        with pytest.raises(TypeError):
            hash(r)
    first = dataclasses.fields(cls)[0].name
    changed = dataclasses.replace(a, **{first: kwargs[first] if cls is RetryPolicy else _other(kwargs[first])})
    assert (changed == a) is (cls is RetryPolicy)
    # fields with compare=False do not count, as in the reference
    for f in dataclasses.fields(cls):
        if not f.compare and f.name != "rng":
            assert dataclasses.replace(a, **{f.name: ()}) == a


def _other(value: Any) -> Any:
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, (int, float)):
        return value + 1
    return (*value, value[0]) if isinstance(value, tuple) else value


def test_frozen_errors_match(pair: tuple[type, type]) -> None:
    cls, ref = pair
    kwargs = _kwargs(cls)
    for obj in (cls(**kwargs), ref(**kwargs)):
        name = dataclasses.fields(cls)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
            setattr(obj, name, 1)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
            delattr(obj, name)
    # Not a field: frozen too. (3.11's generated __setattr__ of a slots class fails here with a TypeError
    # from super(): it holds the class from before the slots copy; ours holds the final one.)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'other'"):
        cls(**kwargs).other = 1
    assert ("__slots__" in cls.__dict__) is ("__slots__" in ref.__dict__)
    if "__slots__" in cls.__dict__:
        assert cls.__slots__ == ref.__slots__  # type: ignore[attr-defined]
        assert not hasattr(cls(**kwargs), "__dict__")


def test_params_say_frozen(pair: tuple[type, type]) -> None:
    cls, ref = pair
    assert dataclasses.is_dataclass(cls)
    assert repr(cls.__dataclass_params__) == repr(ref.__dataclass_params__)  # type: ignore[attr-defined]


def test_subclasses_follow_the_frozen_rules(pair: tuple[type, type]) -> None:
    cls, _ = pair
    with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):
        dataclasses.dataclass(type("Thawed", (cls,), {"__annotations__": {"extra": "int"}, "extra": 0}))
    sub = dataclasses.dataclass(frozen=True)(type("Sub", (cls,), {"__annotations__": {"extra": "int"}, "extra": 0}))
    obj = sub(**_kwargs(cls), extra=5)
    assert obj.extra == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.extra = 6


def test_pickle_and_copy_round_trip(pair: tuple[type, type]) -> None:
    cls, _ = pair
    kwargs = _kwargs(cls)
    if cls is ToolCall:
        kwargs["arguments"] = {"a": [1, 2]}
    obj = cls(**kwargs)
    for twin in (pickle.loads(pickle.dumps(obj)), copy.copy(obj), copy.deepcopy(obj)):
        assert type(twin) is cls
        assert twin == obj
        assert [type(v) for v in _values(twin)] == [type(v) for v in _values(obj)]


def test_match_by_position() -> None:
    match Message.user("hello"):
        case Message("user", text):
            assert text == "hello"
        case _:  # pragma: no cover
            pytest.fail("no match")


def test_post_init_still_checks() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy().rng is not RetryPolicy().rng  # a fresh Random each, as default_factory made
    assert repr(FACTORY) == "<factory>"


def test_record_refuses_what_it_cannot_make() -> None:
    with pytest.raises(TypeError, match="needs an __init__"):

        @record(frozen=True)
        class NoInit:
            x: int

    with pytest.raises(TypeError, match="frozen"):
        record(frozen=False)


def _subclass_with_extra(base: type, name: str, *, slots: bool) -> type:
    """A user's frozen dataclass subclass with one more field, reachable by name (for pickle)."""
    namespace = {"__annotations__": {"extra": "int"}, "extra": 0, "__module__": __name__}
    sub = dataclasses.dataclass(frozen=True, slots=slots)(type(name, (base,), namespace))
    globals()[name] = sub
    return sub


@pytest.mark.parametrize("slots", [False, True], ids=["dict", "slots"])
def test_a_subclass_keeps_its_own_fields_through_copy_and_pickle(pair: tuple[type, type], slots: bool) -> None:
    """The dataclass __getstate__ of a slots class reads fields(self): a subclass's fields too."""
    cls, ref = pair
    seen = []
    for base, tag in ((cls, "Ours"), (ref, "Reference")):
        sub = _subclass_with_extra(base, f"_{tag}{cls.__name__}{slots}", slots=slots)
        obj = sub(**_kwargs(cls), extra=5)
        twins = [copy.copy(obj), copy.deepcopy(obj)]
        twins += [pickle.loads(pickle.dumps(obj, protocol)) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
        seen.append([(type(twin) is sub, twin.extra, twin == obj) for twin in twins])
    assert seen[0] == seen[1] == [(True, 5, True)] * (pickle.HIGHEST_PROTOCOL + 3)
