"""The yandexcloud package: the wire oracle our descriptors are compared with."""

from __future__ import annotations

import importlib.metadata

import pytest

try:
    ORACLE_VERSION = importlib.metadata.version("yandexcloud")
except importlib.metadata.PackageNotFoundError:
    ORACLE_VERSION = ""

requires_oracle = pytest.mark.skipif(
    not ORACLE_VERSION,
    reason="yandexcloud (the wire oracle, in the [test] extra) is not installed; "
    "it pins protobuf<7, so the newest-deps compat venv runs without it",
)
