"""Public classes print, and pickle, as `yandexgpt_grpc.X` rather than under the private module defining them.

Each module calls `public(...)` on its public classes after defining them (not `__module__` in the class
body: dataclasses and NamedTuple read the defining module while they build the class). Pickle finds them
through the package's lazy attributes.
"""

PACKAGE = "yandexgpt_grpc"


def public(*classes: type) -> None:
    for cls in classes:
        cls.__module__ = PACKAGE
