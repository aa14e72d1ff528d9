"""pytest plugin (``pytest11`` entry point ``yandexgpt_grpc``): emulator fixtures.

``yandexgpt_emulator`` is a started :class:`~yandexgpt_grpc.testing.Emulator` with default
settings, stopped after the test. ``yandexgpt_emulator_factory`` builds emulators with custom
arguments (``factory(api_keys=["k"], tls=...)``), all stopped after the test.

The emulator is imported lazily so that merely having this package installed costs pytest runs
that never use the fixtures nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._server import Emulator


@pytest.fixture
def yandexgpt_emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with any ``Emulator(...)`` arguments; all stop at teardown."""
    from ._server import Emulator

    started: list[Emulator] = []

    def factory(*args: Any, **kwargs: Any) -> Emulator:
        emu = Emulator(*args, **kwargs).start()
        started.append(emu)
        return emu

    yield factory
    for emu in reversed(started):
        emu.stop()


@pytest.fixture
def yandexgpt_emulator(
    yandexgpt_emulator_factory: Callable[..., Emulator],
) -> Emulator:
    """A started emulator on 127.0.0.1 with a free port, accepting any credential."""
    return yandexgpt_emulator_factory()
