"""Our compiled descriptors equal the yandexcloud package's (the wire oracle).

Each side is dumped to JSON in its own fresh subprocess, so the two never share a
process (or a descriptor pool) while being read. The dump is semantic: every
FileDescriptorProto is decoded in a scratch pool that knows all the option
extensions (google.api.http, yandex.cloud.*), and the computed json_name, presence
and oneof membership come from the live descriptors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests._oracle import ORACLE_VERSION, requires_oracle

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "yandexgpt_grpc" / "_generated" / "SOURCE.json"
OURS = "yandexgpt_grpc._generated."
THEIRS = ""

pytestmark = requires_oracle

PROTOS = sorted(json.loads(SOURCE.read_text(encoding="utf-8"))["protos"])
MODULES = [p[: -len(".proto")].replace("/", ".") + "_pb2" for p in PROTOS]

_DUMPER = textwrap.dedent(
    """
    import importlib, json, sys
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

    prefix, modules = sys.argv[1], sys.argv[2:]
    live = {}
    for name in modules:
        fd = importlib.import_module(prefix + name).DESCRIPTOR
        live[fd.name] = fd

    # A scratch pool holding descriptor.proto and every file involved, so that option
    # extensions decode into fields whichever pool the module registered in.
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(fd):
        if fd.name in added:
            return
        for dep in fd.dependencies:
            add(dep)
        pool.AddSerializedFile(fd.serialized_pb)
        added.add(fd.name)

    add(descriptor_pb2.DESCRIPTOR)
    for fd in live.values():
        add(fd)
    FDP = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("google.protobuf.FileDescriptorProto"))

    def live_message(m):
        return {
            "fields": {
                f.name: {
                    "json_name": f.json_name,
                    "has_presence": getattr(f, "has_presence", None),
                    "containing_oneof": f.containing_oneof.name if f.containing_oneof else None,
                    "message_type": f.message_type.full_name if f.message_type else None,
                    "enum_type": f.enum_type.full_name if f.enum_type else None,
                }
                for f in m.fields
            },
            "oneofs": {o.name: [f.name for f in o.fields] for o in m.oneofs},
            "nested": {n.name: live_message(n) for n in m.nested_types},
        }

    out = {}
    for name, fd in sorted(live.items()):
        proto = FDP.FromString(fd.serialized_pb)
        known = FDP()
        known.CopyFrom(proto)
        known.DiscardUnknownFields()
        out[name] = {
            "proto": json_format.MessageToDict(
                proto, preserving_proto_field_name=True, descriptor_pool=pool),
            "undecoded_bytes": proto.ByteSize() - known.ByteSize(),
            "live": {m.name: live_message(m) for m in fd.message_types_by_name.values()},
            "services": {
                s.name: {
                    m.name: [m.input_type.full_name, m.output_type.full_name]
                    for m in s.methods
                }
                for s in fd.services_by_name.values()
            },
        }
    json.dump(out, sys.stdout, sort_keys=True)
    """
)


def _dump(prefix: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _DUMPER, prefix, *MODULES],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    side = "ours" if prefix else "yandexcloud"
    assert proc.returncode == 0, f"dumping {side} failed:\n{proc.stderr}"
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


def _keyed(value: Any) -> Any:
    """Lists of named things become dicts by name (declaration order is not wire)."""
    if isinstance(value, dict):
        return {k: _keyed(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and "name" in v for v in value):
            return {v["name"]: _keyed(v) for v in value}
        if all(isinstance(v, str) for v in value):
            return sorted(value)
        return [_keyed(v) for v in value]
    return value


def _diff(ours: Any, theirs: Any, path: str = "") -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        lines = []
        for key in sorted(ours.keys() | theirs.keys()):
            sub = f"{path}.{key}" if path else key
            if key not in theirs:
                lines.append(f"{sub}: only ours has it: {json.dumps(ours[key])[:200]}")
            elif key not in ours:
                lines.append(f"{sub}: missing in ours; yandexcloud: {json.dumps(theirs[key])[:200]}")
            else:
                lines += _diff(ours[key], theirs[key], sub)
        return lines
    if ours != theirs:
        return [f"{path}: ours={json.dumps(ours)[:200]} yandexcloud={json.dumps(theirs)[:200]}"]
    return []


@pytest.fixture(scope="module")
def dumps() -> tuple[dict[str, Any], dict[str, Any]]:
    return _keyed(_dump(OURS)), _keyed(_dump(THEIRS))


def test_the_proto_set_is_the_expected_one() -> None:
    assert len(PROTOS) == 8
    assert "yandex/cloud/iam/v1/iam_token_service.proto" in PROTOS
    assert "yandex/cloud/ai/foundation_models/v1/text_generation/text_generation_service.proto" in PROTOS


@pytest.mark.parametrize("proto", PROTOS)
def test_descriptors_equal_yandexcloud(proto: str, dumps: tuple[dict[str, Any], dict[str, Any]]) -> None:
    ours, theirs = dumps[0][proto], dumps[1][proto]
    assert ours["undecoded_bytes"] == 0, f"{proto}: options we could not decode on our side"
    assert theirs["undecoded_bytes"] == 0, f"{proto}: options we could not decode (yandexcloud)"
    diff = _diff(ours, theirs)
    assert not diff, f"{proto} differs from yandexcloud {ORACLE_VERSION}:\n  " + "\n  ".join(diff[:60])


def test_dump_covers_what_matters(dumps: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Guard the comparison itself: the facts it must see are in the dump."""
    ours = dumps[0]
    tgs = ours["yandex/cloud/ai/foundation_models/v1/text_generation/text_generation_service.proto"]
    services = tgs["proto"]["service"]
    assert set(services) == {
        "TextGenerationService",
        "TextGenerationAsyncService",
        "TextGenerationBatchService",
        "TokenizerService",
    }
    completion = services["TextGenerationService"]["method"]["Completion"]
    assert completion["server_streaming"] is True
    assert completion["options"]["[google.api.http]"]["post"] == "/foundationModels/v1/completion"
    async_completion = services["TextGenerationAsyncService"]["method"]["Completion"]
    assert async_completion["options"]["[yandex.cloud.api.operation]"] == {"response": "CompletionResponse"}
    request = tgs["live"]["CompletionRequest"]
    assert request["oneofs"]["ResponseFormat"] == ["json_object", "json_schema"]
    assert request["fields"]["model_uri"]["json_name"] == "modelUri"
    assert tgs["proto"]["options"]["go_package"].startswith("github.com/yandex-cloud/go-genproto/")
    # yandex.cloud validation extensions on fields are decoded, not dropped.
    dumped = json.dumps(ours)
    assert "[yandex.cloud." in dumped.replace("[yandex.cloud.api.operation]", "")
