"""Our stubs and the yandexcloud package in ONE process, in either import order.

Each order runs in a fresh interpreter with -W error. Both sides build the same
CompletionRequest (DoubleValue, Int64Value, a oneof holding a Struct, a tool_choice
oneof, emoji and Cyrillic text), and each parses the other's bytes identically.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests._oracle import ORACLE_VERSION, requires_oracle

pytestmark = requires_oracle

_SCRIPT = textwrap.dedent(
    """
    import importlib, sys
    from google.protobuf import descriptor_pool, json_format

    TGS = "yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2"
    OPS = "yandex.cloud.operation.operation_service_pb2"
    IAM = "yandex.cloud.iam.v1.iam_token_service_pb2"
    DS = "yandex.cloud.ai.dataset.v1.dataset_service_pb2"
    BIS = "yandex.cloud.ai.batch_inference.v1.batch_inference_service_pb2"
    OURS = "yandexgpt_grpc._generated."
    order = [OURS, ""] if sys.argv[1] == "ours-first" else ["", OURS]
    loaded = {}
    for prefix in order:
        for name in (TGS, OPS, IAM, DS, BIS):
            loaded[(prefix, name)] = importlib.import_module(prefix + name)
        for name in (TGS, DS, BIS):
            try:
                importlib.import_module(prefix + name.replace("_pb2", "_pb2_grpc"))
            except RuntimeError as exc:
                # yandexcloud 0.413.0 ships grpc gencode from a newer grpcio-tools than
                # its metadata admits (it wants grpcio>=1.78); at our grpcio floor only
                # its messages load. Ours must always load.
                if prefix == OURS or "depends on grpcio>=" not in str(exc):
                    raise
    ours, theirs = loaded[(OURS, TGS)], loaded[("", TGS)]
    assert ours.DESCRIPTOR.pool is not descriptor_pool.Default()
    assert theirs.DESCRIPTOR.pool is descriptor_pool.Default()
    assert ours.CompletionRequest is not theirs.CompletionRequest

    TEXT = "Привет, мир! 👋🏽 emoji 🚀 and a ZWJ family 👨‍👩‍👧"
    SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "n": 1.5, "ok": True, "none": None}

    def build(mod, variant):
        req = mod.CompletionRequest(model_uri="gpt://b1gfolder/yandexgpt-lite/latest")
        req.completion_options.stream = True
        req.completion_options.temperature.value = 0.3
        req.completion_options.max_tokens.value = 2000
        req.messages.add(role="system", text="Отвечай кратко")
        req.messages.add(role="user", text=TEXT)
        if variant == "json_schema":
            req.json_schema.schema.update(SCHEMA)
        else:
            req.json_object = True
            req.tool_choice.function_name = "get_weather"
            tool = req.tools.add()
            tool.function.name = "get_weather"
            tool.function.parameters.update({"city": {"type": "string"}})
            req.parallel_tool_calls.value = False
        return req

    def facts(req):
        return (
            req.model_uri, req.completion_options.stream,
            req.completion_options.HasField("temperature"),
            req.completion_options.temperature.value,
            req.completion_options.max_tokens.value,
            [(m.role, m.text, m.WhichOneof("Content")) for m in req.messages],
            req.WhichOneof("ResponseFormat"),
            json_format.MessageToDict(req.json_schema.schema),
            req.tool_choice.WhichOneof("ToolChoice"), req.tool_choice.function_name,
            [json_format.MessageToDict(t.function.parameters) for t in req.tools],
            req.HasField("parallel_tool_calls"), req.parallel_tool_calls.value,
        )

    for variant in ("json_schema", "tool_choice"):
        a, b = build(ours, variant), build(theirs, variant)
        wa, wb = a.SerializeToString(deterministic=True), b.SerializeToString(deterministic=True)
        assert wa == wb, (variant, wa, wb)
        theirs_reads_ours = theirs.CompletionRequest.FromString(wa)
        ours_reads_theirs = ours.CompletionRequest.FromString(wb)
        assert facts(theirs_reads_ours) == facts(a) == facts(b) == facts(ours_reads_theirs)
        assert facts(a)[5][1][1] == TEXT
        assert json_format.MessageToDict(ours_reads_theirs) == json_format.MessageToDict(b)
        assert theirs_reads_ours.SerializeToString(deterministic=True) == wa
        assert ours_reads_theirs.SerializeToString(deterministic=True) == wb
        if variant == "json_schema":
            assert json_format.MessageToDict(a.json_schema.schema) == SCHEMA

    # A streamed response chunk, server (theirs) to client (ours).
    resp = theirs.CompletionResponse(model_version="23.10.2024")
    alt = resp.alternatives.add(status=1)
    alt.message.role, alt.message.text = "assistant", TEXT
    resp.usage.input_text_tokens, resp.usage.total_tokens = 7, 19
    mine = ours.CompletionResponse.FromString(resp.SerializeToString())
    assert mine.alternatives[0].message.text == TEXT
    assert mine.usage.total_tokens == 19 and mine.model_version == "23.10.2024"
    assert mine.alternatives[0].status == 1

    # The batch engine: a multipart finish (client to server) and a failed task (server to client).
    assert loaded[(OURS, DS)].DESCRIPTOR.pool is ours.DESCRIPTOR.pool
    assert loaded[("", DS)].DESCRIPTOR.pool is descriptor_pool.Default()
    finish = loaded[(OURS, DS)].FinishMultipartUploadDraftRequest(dataset_id="fds1")
    finish.uploaded_parts.add(part_num=1, etag='"9b2cf535f27731c974343645a3985328"')
    finish.uploaded_parts.add(part_num=2, etag='"e80b5017098950fc58aad83c8c14978e"')
    theirs_finish = loaded[("", DS)].FinishMultipartUploadDraftRequest.FromString(finish.SerializeToString())
    assert [(p.part_num, p.etag) for p in theirs_finish.uploaded_parts] == [
        (p.part_num, p.etag) for p in finish.uploaded_parts
    ]
    bis = loaded[("", BIS)]
    task = bis.DescribeBatchInferenceResponse().task
    task.task_id, task.status, task.result_dataset_id = "bt1", 5, ""
    task.completion_request.model_uri = "gpt://b1gfolder/yandexgpt-lite/latest"
    task.completion_request.json_schema.schema.update(SCHEMA)
    task.errors.line_errors.add(line_number=7, message=TEXT)
    task.errors.batch_errors.add(batch_number=2, first_line=11, last_line=20, message="timeout")
    task.created_at.seconds = 1_700_000_000
    wire = bis.DescribeBatchInferenceResponse(task=task).SerializeToString(deterministic=True)
    got = loaded[(OURS, BIS)].DescribeBatchInferenceResponse.FromString(wire).task
    assert got.status == got.FAILED == 5 and got.WhichOneof("request") == "completion_request"
    assert json_format.MessageToDict(got.completion_request.json_schema.schema) == SCHEMA
    assert [(e.line_number, e.message) for e in got.errors.line_errors] == [(7, TEXT)]
    assert got.errors.batch_errors[0].last_line == 20 and got.created_at.seconds == 1_700_000_000
    assert got.SerializeToString(deterministic=True) == task.SerializeToString(deterministic=True)
    print("OK", sys.argv[1])
    """
)


@pytest.mark.parametrize("order", ["theirs-first", "ours-first"])
def test_both_packages_in_one_process(order: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", _SCRIPT, order],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, f"{order} (yandexcloud {ORACLE_VERSION}):\n{proc.stderr}"
    assert proc.stdout.strip() == f"OK {order}"
