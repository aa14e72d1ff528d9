"""A local emulator of the YandexGPT text-generation gRPC API, for testing code offline.

>>> from yandexgpt_grpc.testing import Emulator, Reply
>>> with Emulator() as emu:
...     emu.enqueue("Completion", Reply(chunks=["Hel", "lo"]))
...     # point a client at emu.address with any "Api-Key <anything>" credential

See :class:`Emulator` for the server, :class:`Reply` / :class:`Fault` / :class:`OperationScript`
for scripting and :class:`CapturedCall` for what gets recorded. The pytest plugin in
``yandexgpt_grpc.testing.pytest_plugin`` provides a ``yandexgpt_emulator`` fixture.
"""

from __future__ import annotations

from ._batch_engine import Schedule
from ._batch_services import BatchEngineService
from ._capture import CapturedCall
from ._iam import IamService, IssuedToken
from ._model import DEFAULT_MODELS, MODEL_VERSIONS, sample_value, tokenize
from ._object_store import ObjectStore
from ._script import Fault, OperationScript, Reply
from ._server import METHODS, Emulator

__all__ = [
    "DEFAULT_MODELS",
    "METHODS",
    "MODEL_VERSIONS",
    "BatchEngineService",
    "CapturedCall",
    "Emulator",
    "Fault",
    "IamService",
    "IssuedToken",
    "ObjectStore",
    "OperationScript",
    "Reply",
    "Schedule",
    "sample_value",
    "tokenize",
]
