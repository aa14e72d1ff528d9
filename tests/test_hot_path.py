"""Behaviour the hot-path trims must keep: request ids, lazy package attributes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

import yandexgpt_grpc
from yandexgpt_grpc._base import new_request_id


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in ids:
        u = uuid.UUID(rid)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == rid


def test_every_public_name_resolves() -> None:
    for name in yandexgpt_grpc.__all__:
        assert getattr(yandexgpt_grpc, name) is not None
        assert name in dir(yandexgpt_grpc)
    assert yandexgpt_grpc.Client.__module__ == "yandexgpt_grpc._client"


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        yandexgpt_grpc.no_such_name  # noqa: B018


def test_plain_import_defers_the_generated_stubs() -> None:
    code = (
        "import sys, yandexgpt_grpc; "
        "assert not [m for m in sys.modules if '_generated' in m], sorted(sys.modules); "
        "from yandexgpt_grpc import Client; "
        "assert 'yandexgpt_grpc._client' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
