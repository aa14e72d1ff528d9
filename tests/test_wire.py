"""Our compiled descriptors equal the yandexcloud package's (the wire oracle).

Each side is dumped to JSON in its own fresh subprocess, so the two never share a
process (or a descriptor pool) while being read. The dump is semantic: every
FileDescriptorProto is decoded in a scratch pool that knows all the option
extensions (google.api.http, yandex.cloud.*), and the computed json_name, presence
and oneof membership come from the live descriptors.
"""

from __future__ import annotations

import importlib
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

EXPECTED_PROTOS = {
    "yandex/cloud/ai/batch_inference/v1/batch_inference_service.proto",
    "yandex/cloud/ai/batch_inference/v1/batch_inference_task.proto",
    "yandex/cloud/ai/batch_inference/v1/inference_options.proto",
    "yandex/cloud/ai/dataset/v1/dataset.proto",
    "yandex/cloud/ai/dataset/v1/dataset_service.proto",
    "yandex/cloud/ai/foundation_models/v1/batch_inference_task_status.proto",
    "yandex/cloud/ai/foundation_models/v1/text_common.proto",
    "yandex/cloud/ai/foundation_models/v1/text_generation/text_generation_service.proto",
    "yandex/cloud/api/operation.proto",
    "yandex/cloud/iam/v1/iam_token_service.proto",
    "yandex/cloud/operation/operation.proto",
    "yandex/cloud/operation/operation_service.proto",
    "yandex/cloud/validation.proto",
}


def _elements() -> list[tuple[str, str, str]]:
    """(proto, kind, dotted name) of every message, enum and service we declare, nested ones too."""
    found: list[tuple[str, str, str]] = []

    def walk(proto: str, message: Any, prefix: str) -> None:
        name = prefix + message.name
        found.append((proto, "message", name))
        for nested in message.nested_types:
            if not nested.GetOptions().map_entry:
                walk(proto, nested, name + ".")
        found.extend((proto, "enum", f"{name}.{e.name}") for e in message.enum_types)

    for proto, module in zip(PROTOS, MODULES, strict=True):
        fd = importlib.import_module(OURS + module).DESCRIPTOR
        for message in fd.message_types_by_name.values():
            walk(proto, message, "")
        found.extend((proto, "enum", e.name) for e in fd.enum_types_by_name.values())
        found.extend((proto, "service", s.name) for s in fd.services_by_name.values())
    return found


ELEMENTS = _elements()

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
    assert set(PROTOS) == EXPECTED_PROTOS


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


# ------------------------------------------------------------------ element by element


def _element(dump: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """One message (with its live fields), enum or service out of a file's dump."""
    parts = name.split(".")
    proto = dump["proto"]
    if kind == "service":
        return {"proto": proto["service"][name], "methods": dump["services"][name]}
    if kind == "enum" and len(parts) == 1:
        return {"proto": proto["enum_type"][name]}
    node, live = proto["message_type"][parts[0]], dump["live"][parts[0]]
    last = len(parts) if kind == "message" else len(parts) - 1
    for part in parts[1:last]:
        node, live = node["nested_type"][part], live["nested"][part]
    if kind == "enum":
        return {"proto": node["enum_type"][parts[-1]]}
    return {"proto": node, "live": live}


@pytest.mark.parametrize(
    ("proto", "kind", "name"), ELEMENTS, ids=[f"{k}-{p.removeprefix('yandex/cloud/')}:{n}" for p, k, n in ELEMENTS]
)
def test_every_message_enum_and_service_equals_yandexcloud(
    proto: str, kind: str, name: str, dumps: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """Field by field (numbers, types, labels, oneofs, json names, options), method by method."""
    ours, theirs = dumps[0][proto], dumps[1][proto]
    try:
        expected = _element(theirs, kind, name)
    except KeyError:
        pytest.fail(f"{kind} {name} of {proto} is not in yandexcloud {ORACLE_VERSION}")
    diff = _diff(_element(ours, kind, name), expected, name)
    assert not diff, f"{kind} {name} differs from yandexcloud {ORACLE_VERSION}:\n  " + "\n  ".join(diff[:60])


def _names(dump: dict[str, Any]) -> set[tuple[str, str]]:
    proto = dump["proto"]
    out = {("service", n) for n in proto.get("service", {})}
    out |= {("enum", n) for n in proto.get("enum_type", {})}

    def walk(message: dict[str, Any], name: str) -> None:
        out.add(("message", name))
        out.update(("enum", f"{name}.{e}") for e in message.get("enum_type", {}))
        for nested_name, nested in message.get("nested_type", {}).items():
            if not nested.get("options", {}).get("map_entry"):
                walk(nested, f"{name}.{nested_name}")

    for name, message in proto.get("message_type", {}).items():
        walk(message, name)
    return out


def test_the_element_list_misses_nothing_yandexcloud_has(dumps: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for proto in PROTOS:
        ours = {(k, n) for p, k, n in ELEMENTS if p == proto}
        assert _names(dumps[1][proto]) == ours, proto
        assert _names(dumps[0][proto]) == ours, proto


def test_dump_covers_the_batch_engine(dumps: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Guard the comparison: the facts the batch engine relies on are in the dump (issue 15)."""
    ours = dumps[0]
    ds = ours["yandex/cloud/ai/dataset/v1/dataset_service.proto"]
    methods = ds["proto"]["service"]["DatasetService"]["method"]
    assert set(methods) == {
        "Create",
        "Delete",
        "Describe",
        "FinishMultipartUploadDraft",
        "GetDownloadUrls",
        "GetPreview",
        "GetUploadDraftUrl",
        "List",
        "ListOperationsIds",
        "ListTypes",
        "ListUploadFormats",
        "ListUploadSchemas",
        "StartMultipartUploadDraft",
        "Update",
        "Validate",
    }
    assert not any(m.get("client_streaming") or m.get("server_streaming") for m in methods.values())
    assert methods["Validate"]["options"]["[yandex.cloud.api.operation]"] == {
        "metadata": "ValidateDatasetMetadata",
        "response": "ValidateDatasetResponse",
    }
    assert methods["ListUploadFormats"]["options"]["deprecated"] is True
    create = ds["proto"]["message_type"]["CreateDatasetRequest"]["field"]
    assert create["name"]["options"] == {"[yandex.cloud.required]": True, "[yandex.cloud.length]": "<=63"}
    assert {"folder_id", "task_type", "upload_format"} <= set(create)
    assert ds["live"]["CreateDatasetRequest"]["fields"]["labels"]["message_type"].endswith(".LabelsEntry")
    part = ds["proto"]["message_type"]["UploadedPartInfo"]["field"]
    assert (part["part_num"]["number"], part["part_num"]["type"]) == (1, "TYPE_INT64")
    assert (part["etag"]["number"], part["etag"]["type"]) == (2, "TYPE_STRING")
    validate_meta = ds["proto"]["message_type"]["ValidateDatasetMetadata"]["field"]
    assert set(validate_meta) == {"dataset_id", "valid_rows", "processed_rows", "total_rows"}

    info = ours["yandex/cloud/ai/dataset/v1/dataset.proto"]["proto"]["message_type"]["DatasetInfo"]
    assert set(info["enum_type"]["Status"]["value"]) >= {"DRAFT", "VALIDATING", "READY", "INVALID"}
    assert info["reserved_range"] == [{"start": 16, "end": 21}]

    bis = ours["yandex/cloud/ai/batch_inference/v1/batch_inference_service.proto"]
    assert set(bis["services"]["BatchInferenceService"]) == {"Describe", "List", "Cancel", "Delete"}
    task = ours["yandex/cloud/ai/batch_inference/v1/batch_inference_task.proto"]["live"]["BatchInferenceTask"]
    assert task["oneofs"]["request"] == ["completion_request"]
    errors = task["nested"]["ErrorsInfo"]
    assert set(errors["nested"]) == {"LineError", "BatchError"}
    assert errors["fields"]["status"]["message_type"] == "google.rpc.Status"
    task_file = ours["yandex/cloud/ai/batch_inference/v1/batch_inference_task.proto"]["proto"]
    statuses = task_file["message_type"]["BatchInferenceTask"]["enum_type"]["Status"]["value"]
    lifecycle = ("CREATED", "PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELED")
    assert [statuses[n]["number"] for n in lifecycle] == [1, 2, 3, 4, 5, 6]

    tgs = ours["yandex/cloud/ai/foundation_models/v1/text_generation/text_generation_service.proto"]
    batch = tgs["proto"]["service"]["TextGenerationBatchService"]["method"]["Completion"]
    assert batch["output_type"] == ".yandex.cloud.operation.Operation"
    assert batch["options"]["[yandex.cloud.api.operation]"]["metadata"] == "BatchCompletionMetadata"
    request = tgs["live"]["BatchCompletionRequest"]
    assert {"model_uri", "completion_options", "source_dataset_id", "json_object", "json_schema"} <= set(
        request["fields"]
    )
    assert set(tgs["live"]["BatchCompletionMetadata"]["fields"]) == {
        "task_id",
        "task_status",
        "completed_batches",
        "total_batches",
    }
