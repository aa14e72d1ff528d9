"""Frozen dataclasses without dataclasses' code generation, for the classes every import defines.

`@dataclass(frozen=True)` writes `__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__` and
`__delattr__` as source text and compiles it with exec() at each import: about 4 M instructions a
class, which made the public value classes the largest part of `import yandexgpt_grpc`'s own cost
(and of a one-shot CLI call's start-up). `@record(...)` makes the same dataclass from an `__init__`
written in the class body (as fast as the generated one) and shared methods for the rest:
`dataclasses.fields()`, `replace()`, `asdict()`, `match`, pickling, equality, hashing and the
frozen errors behave as before, and `__dataclass_params__` says frozen. Type checkers see the
standard `dataclass` (the TYPE_CHECKING branch below), so they know the classes are frozen.
tests/test_records.py compares each class with a real frozen dataclass of the same fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

__all__ = ["FACTORY", "record"]


class _Factory:
    """The default of a field with a default_factory in a written __init__; shown as dataclass shows it."""

    def __repr__(self) -> str:
        return "<factory>"


FACTORY: Final[Any] = _Factory()  # Any: it stands in for a default of any field's type

if TYPE_CHECKING:
    from dataclasses import dataclass as record
else:
    import dataclasses
    from operator import attrgetter
    from reprlib import recursive_repr

    def _key(names):
        """A function from an instance to the tuple of these fields, as the generated methods compare them."""
        if not names:
            return lambda obj: ()
        if len(names) == 1:
            one = attrgetter(names[0])
            return lambda obj: (one(obj),)
        return attrgetter(*names)

    def record(*, frozen=True, slots=False, repr=True):
        if not frozen:
            raise TypeError("record() makes frozen dataclasses only")

        def wrap(cls):
            if "__init__" not in cls.__dict__:
                raise TypeError(f"{cls.__qualname__}: @record needs an __init__ written in the class body")
            annotations = cls.__dict__["__init__"].__annotations__
            if annotations.get("return") == "None":  # `from __future__` made it a string; the generated one is None
                annotations["return"] = None
            cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=slots)
            fields = dataclasses.fields(cls)
            names = frozenset(f.name for f in fields)
            shown = tuple(f.name for f in fields if f.repr)
            compared = _key(tuple(f.name for f in fields if f.compare))
            hashed = _key(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))

            def __eq__(self, other):
                if other.__class__ is self.__class__:
                    return compared(self) == compared(other)
                return NotImplemented

            def __hash__(self):
                return hash(hashed(self))

            def __setattr__(self, name, value):
                if type(self) is cls or name in names:
                    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
                super(cls, self).__setattr__(name, value)

            def __delattr__(self, name):
                if type(self) is cls or name in names:
                    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
                super(cls, self).__delattr__(name)

            methods = [__eq__, __hash__, __setattr__, __delattr__]
            if repr:

                @recursive_repr()
                def __repr__(self):
                    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
                    return f"{self.__class__.__qualname__}({inner})"

                methods.append(__repr__)
            if slots:  # no __dict__ for pickle to fill, and __setattr__ refuses: state as a list, as dataclass does
                # The fields of the instance's own class, as dataclass reads them: a subclass's too.

                def __getstate__(self):
                    return [getattr(self, f.name) for f in dataclasses.fields(self)]

                def __setstate__(self, state):
                    for f, value in zip(dataclasses.fields(self), state, strict=False):
                        object.__setattr__(self, f.name, value)

                methods += [__getstate__, __setstate__]
            for method in methods:
                name = method.__name__
                if name in cls.__dict__:  # written in the body: kept, as dataclass keeps it (or refuses it)
                    if name in ("__setattr__", "__delattr__"):
                        raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
                    continue
                method.__qualname__ = f"{cls.__qualname__}.{name}"
                setattr(cls, name, method)  # type.__setattr__: the class itself is not frozen
            params = cls.__dataclass_params__
            params.init = params.repr = params.eq = params.frozen = True
            if not repr:
                params.repr = False
            return cls

        return wrap
