"""Function tools: from a name + JSON schema, or derived from a plain typed Python function.

The schema comes from the signature (annotations and defaults) and the docstring's parameter
section (Google "Args:", NumPy "Parameters", or Sphinx ":param x:"), with no dependency beyond
the standard library.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from ._public import public
from ._types import ToolCall, ToolResult, _content

JsonSchema = Mapping[str, Any]

_NONE_TYPE = type(None)
_SCALARS: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number", _NONE_TYPE: "null"}
_ARRAYS = (
    list,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.Iterable,
    collections.abc.Collection,
)
_OBJECTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_EMPTY_PARAMETERS: Mapping[str, Any] = types.MappingProxyType({"type": "object", "properties": {}})


@dataclass(frozen=True)
class FunctionTool:
    """A function the model may ask to call: name, description and a JSON schema of its arguments.

    Build one directly, or with `FunctionTool.from_function(fn)` / `@function_tool` from a typed
    function; then `function` is kept so `invoke(call)` can run it. `strict=True` asks the
    model to follow the schema exactly.
    """

    name: str
    description: str = ""
    parameters: JsonSchema = field(default_factory=lambda: dict(_EMPTY_PARAMETERS))
    strict: bool = False
    function: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or any(c.isspace() for c in self.name):
            raise ValueError(f"a tool name must be a non-empty str without spaces, got {self.name!r}")
        if not isinstance(self.description, str):
            raise TypeError(f"tool {self.name!r}: description must be a str, got {type(self.description).__name__}")
        if not isinstance(self.strict, bool):
            raise TypeError(f"tool {self.name!r}: strict must be a bool, got {type(self.strict).__name__}")
        object.__setattr__(self, "parameters", schema_of(self.parameters, f"tool {self.name!r} parameters"))

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        strict: bool = False,
    ) -> FunctionTool:
        """Derive the tool from `fn`'s signature, type hints and docstring."""
        if not callable(fn):
            raise TypeError(f"expected a function, got {type(fn).__name__}")
        tool_name = name or getattr(fn, "__name__", "")
        if not tool_name or tool_name == "<lambda>":
            raise ValueError("cannot name this tool from the function: pass name=")
        summary, params_doc = parse_docstring(inspect.getdoc(fn) or "")
        parameters = signature_schema(fn, params_doc)
        return cls(tool_name, summary if description is None else description, parameters, strict=strict, function=fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function, so a decorated function stays usable as one."""
        if self.function is None:
            raise TypeError(f"tool {self.name!r} was built from a schema and has no function to call")
        return self.function(*args, **kwargs)

    def invoke(self, call: ToolCall) -> ToolResult:
        """Run the function with the model's arguments; the answer is ready for `Message.with_tool_results`."""
        if call.name != self.name:
            raise ValueError(f"the model called {call.name!r}, not {self.name!r}")
        return ToolResult(self.name, _content(self(**_coerce_enums(self.function, dict(call.arguments)))))


@overload
def function_tool(fn: Callable[..., Any], /) -> FunctionTool: ...


@overload
def function_tool(
    fn: None = None, /, *, name: str | None = None, description: str | None = None, strict: bool = False
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def function_tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool = False,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """`function_tool(fn)`, or a decorator: `@function_tool` / `@function_tool(strict=True)`."""
    if fn is not None:
        return FunctionTool.from_function(fn, name=name, description=description, strict=strict)

    def decorate(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool.from_function(f, name=name, description=description, strict=strict)

    return decorate


def as_tool(item: Any, where: str) -> FunctionTool:
    """A FunctionTool from what `tools=` accepts: a FunctionTool, a function, or a dict."""
    if isinstance(item, FunctionTool):
        return item
    if isinstance(item, Mapping):
        spec = item.get("function", item) if item.get("type", "function") == "function" else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ValueError(f"{where}: a tool dict needs 'name' (and 'description', 'parameters', 'strict')")
        unknown = set(spec) - {"name", "description", "parameters", "strict", "type"}
        if unknown:
            raise ValueError(f"{where}: unsupported tool keys {sorted(unknown)}")
        params = spec.get("parameters")
        return FunctionTool(
            spec["name"],
            spec.get("description") or "",
            dict(_EMPTY_PARAMETERS) if params is None else params,
            strict=spec.get("strict", False),
        )
    if callable(item) and not isinstance(item, type):
        return FunctionTool.from_function(item)
    raise TypeError(f"{where}: expected a FunctionTool, a typed function or a dict, got {type(item).__name__}")


# -- JSON schema values ------------------------------------------------------------------------


_SUPPORTED_SCHEMAS = (
    "a JSON-schema dict, a pydantic model class, or any type pydantic's TypeAdapter describes "
    "(a pydantic or standard dataclass, a TypedDict, list[int], ...)"
)


def schema_of(value: Any, where: str) -> dict[str, Any]:
    """A JSON schema as a plain dict, from a dict or a type pydantic can describe; checked to be JSON."""
    if isinstance(value, type) or typing.get_origin(value) is not None:  # a class, list[int], Literal[...]
        to_schema = getattr(value, "model_json_schema", None)
        value = to_schema() if callable(to_schema) else _adapter_schema(value, where)
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{where}: a JSON schema must be a JSON object (a dict), got {type(value).__name__}; "
            f"pass {_SUPPORTED_SCHEMAS}"
        )
    checked = _json_value(value, where)
    assert isinstance(checked, dict)
    return checked


def _adapter_schema(value: Any, where: str) -> Any:
    """The JSON schema pydantic's TypeAdapter gives a type; pydantic stays an optional dependency."""
    shown = _type_name(value)
    try:
        from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter
    except ImportError:
        raise TypeError(
            f"{where}: {shown} is not a JSON-schema dict; install pydantic to pass {_SUPPORTED_SCHEMAS}"
        ) from None
    try:
        return TypeAdapter(value).json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise TypeError(f"{where}: pydantic cannot describe {shown} ({reason}); pass {_SUPPORTED_SCHEMAS}") from None


def _json_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: JSON object keys must be str, got {key!r}")
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not a JSON value")


# -- schema from a signature -------------------------------------------------------------------


def signature_schema(fn: Callable[..., Any], docs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON schema of `fn`'s keyword-callable parameters."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # an annotation that does not resolve
        raise TypeError(f"cannot resolve the type hints of {_qualname(fn)}: {exc}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    closed = True
    for pname, param in sig.parameters.items():
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            closed = False
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{_qualname(fn)}: positional-only parameter {pname!r} cannot take a tool argument")
        where = f"{_qualname(fn)} parameter {pname!r}"
        prop = annotation_schema(hints.get(pname, Any), where)
        doc = (docs or {}).get(pname)
        if doc and "description" not in prop:
            prop["description"] = doc
        if param.default is param.empty:
            required.append(pname)
        else:
            default = _json_default(param.default)
            if default is not _NO_DEFAULT:
                prop["default"] = default
        properties[pname] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


_NO_DEFAULT = object()


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        return _json_value(value, "default")
    except TypeError:
        return _NO_DEFAULT


def annotation_schema(tp: Any, where: str) -> dict[str, Any]:
    """The JSON schema of one type annotation."""
    if tp is Any or tp is object:
        return {}
    if tp is None or tp is _NONE_TYPE:
        return {"type": "null"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        schema = annotation_schema(args[0], where)
        note = next((a for a in args[1:] if isinstance(a, str)), None)
        if note:
            schema["description"] = note
        return schema
    if origin is typing.Union or isinstance(tp, types.UnionType):
        return _union_schema(args, where)
    if origin is typing.Literal:
        return _enum_schema(list(args), where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([m.value for m in tp], where)
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if origin is tuple or tp is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": annotation_schema(args[0], where)}
        if args and args != ((),):
            items = [annotation_schema(a, where) for a in args]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        return {"type": "array"}
    if tp in _ARRAYS or origin in _ARRAYS:
        schema = {"type": "array"}
        if args:
            schema["items"] = annotation_schema(args[0], where)
        if tp in (set, frozenset) or origin in (set, frozenset, collections.abc.Set):
            schema["uniqueItems"] = True
        return schema
    if tp in _OBJECTS or origin in _OBJECTS:
        schema = {"type": "object"}
        if len(args) == 2:
            if args[0] is not str:
                raise TypeError(f"{where}: JSON object keys are strings, not {_type_name(args[0])}")
            value = annotation_schema(args[1], where)
            if value:
                schema["additionalProperties"] = value
        return schema
    to_schema = getattr(tp, "model_json_schema", None) if isinstance(tp, type) else None
    if callable(to_schema):  # a pydantic model as a parameter type
        return dict(to_schema())
    raise TypeError(
        f"{where}: cannot derive a JSON schema from {_type_name(tp)}; use str, int, float, bool, list[...], "
        "dict[str, ...], Literal, Optional, an Enum, or build FunctionTool(name, description, parameters) yourself"
    )


def _union_schema(args: tuple[Any, ...], where: str) -> dict[str, Any]:
    options = [annotation_schema(a, where) for a in args]
    if {} in options:  # Any admits everything, null included (Python 3.10 reads `x: Any = None` as Optional[Any])
        return {}
    if all(set(o) == {"type"} and isinstance(o["type"], str) for o in options):
        kinds = list(dict.fromkeys(o["type"] for o in options))
        return {"type": kinds[0] if len(kinds) == 1 else kinds}
    nullable = {"type": "null"} in options
    rest = [o for o in options if o != {"type": "null"}]
    if nullable and len(rest) == 1 and isinstance(rest[0].get("type"), str) and "enum" in rest[0]:
        return {**rest[0], "type": [rest[0]["type"], "null"], "enum": [*rest[0]["enum"], None]}
    return {"anyOf": options}


def _enum_schema(values: list[Any], where: str) -> dict[str, Any]:
    for v in values:
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise TypeError(f"{where}: enum value {v!r} is not a JSON scalar")
    kinds = list(dict.fromkeys(_SCALARS[type(v)] for v in values if type(v) in _SCALARS))
    schema: dict[str, Any] = {"enum": values}
    if len(kinds) == 1:
        schema = {"type": kinds[0], "enum": values}
    return schema


def _coerce_enums(fn: Callable[..., Any] | None, arguments: dict[str, Any]) -> dict[str, Any]:
    """Turn enum values back into members for parameters annotated with an Enum class."""
    if fn is None:
        return arguments
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return arguments
    for name, value in arguments.items():
        tp = hints.get(name)
        candidates = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        for cand in candidates:
            if isinstance(cand, type) and issubclass(cand, enum.Enum) and not isinstance(value, cand):
                try:
                    arguments[name] = cand(value)
                    break
                except ValueError:
                    continue
    return arguments


def _qualname(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp)


# -- docstrings --------------------------------------------------------------------------------

_GOOGLE_HEADERS = frozenset({"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"})
_SECTION_RE = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_NUMPY_RULE_RE = re.compile(r"^-{3,}\s*$")
_GOOGLE_ITEM_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ITEM_RE = re.compile(r"^\*{0,2}(\w+)\s*(?::.*)?$")
_SPHINX_RE = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google, NumPy or Sphinx style docstring."""
    lines = doc.expandtabs().splitlines()
    params: dict[str, str] = {}
    body: list[str] = []
    i = 0
    in_body = True
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        header = _SECTION_RE.match(stripped)
        if header and not line.startswith((" ", "\t")):
            in_body = False
            i = _google_section(lines, i + 1, params if header.group(1).lower() in _GOOGLE_HEADERS else None)
            continue
        if stripped and _NUMPY_RULE_RE.match(nxt) and not line.startswith(" "):
            in_body = False
            is_params = stripped.lower() in _GOOGLE_HEADERS or stripped.lower() == "other parameters"
            i = _numpy_section(lines, i + 2, params if is_params else None)
            continue
        sphinx = _SPHINX_RE.match(stripped)
        if sphinx:
            in_body = False
            text = [sphinx.group(2)]
            i += 1
            while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
                text.append(lines[i].strip())
                i += 1
            params[sphinx.group(1)] = " ".join(t for t in text if t)
            continue
        if stripped.startswith(":"):  # :returns:, :raises ...: and other fields end the description
            in_body = False
        if in_body:
            body.append(line.rstrip())
        i += 1
    return "\n".join(body).strip(), params


def _google_section(lines: list[str], i: int, params: dict[str, str] | None) -> int:
    """Consume an indented section; record `name (type): text` items when `params` is given."""
    item_indent: int | None = None
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "\t")):
            break
        if line.strip():
            indent = len(line) - len(line.lstrip())
            if item_indent is None:
                item_indent = indent
            m = _GOOGLE_ITEM_RE.match(line.strip()) if indent <= item_indent else None
            if m and params is not None:
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and params is not None and indent > item_indent:
                params[current] = f"{params[current]} {line.strip()}".strip()
        i += 1
    return i


def _numpy_section(lines: list[str], i: int, params: dict[str, str] | None) -> int:
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if stripped and _NUMPY_RULE_RE.match(nxt) and not line.startswith(" "):
            break  # the next section
        if stripped and not line.startswith((" ", "\t")):
            m = _NUMPY_ITEM_RE.match(stripped)
            current = m.group(1) if m else None
            if current and params is not None:
                params[current] = ""
        elif stripped and current and params is not None:
            params[current] = f"{params[current]} {stripped}".strip()
        i += 1
    return i


__all__ = [
    "FunctionTool",
    "annotation_schema",
    "as_tool",
    "function_tool",
    "parse_docstring",
    "schema_of",
    "signature_schema",
]


public(FunctionTool)
