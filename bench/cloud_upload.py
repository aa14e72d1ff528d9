"""Cloud batch upload: memory and speed of IN -> engine JSONL -> presigned multipart upload.

``python -m bench.cloud_upload [--size-mb 1024]``: writes an IN of that size, then in fresh
processes (so each peak RSS is its own) runs

* ours: ``convert_input`` (the streaming conversion) and ``HttpTransfer.put_parts`` (parallel
  multipart parts, 1 MiB chunks) to the emulator's object store, itself in a third process;
* plain: one standard-library ``http.client`` PUT of the same converted file to the same store
  (file body sent in 1 MiB blocks), the baseline the issue names.

Targets (issue 15): ours peaks under 150 MB RSS and uploads at >= 80 % of the plain PUT's
throughput. Conversion time is reported apart from the upload time.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
RSS_TARGET_MB = 150
RATIO_TARGET = 0.8


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak / 1024 if sys.platform != "darwin" else peak / MiB


def _ask(proc: subprocess.Popen[str], request: dict[str, Any]) -> Any:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench process ended without answering {request.get('op')}")
    return json.loads(line)


# -- the store process ---------------------------------------------------------------------


def serve() -> None:
    from yandexgpt_grpc.testing._object_store import ObjectStore

    with ObjectStore() as store:
        for line in sys.stdin:
            req = json.loads(line)
            op = req["op"]
            if op == "put":
                reply: Any = {"url": store.presign_put(req["key"], req["size"])}
            elif op == "multipart":
                upload_id, urls = store.start_multipart(req["key"], req["size"], req["parts"])
                reply = {"upload_id": upload_id, "urls": urls}
            elif op == "complete":
                rec = store.complete_multipart(req["upload_id"], [tuple(p) for p in req["parts"]])
                reply = {"size": rec.size, "sha256": rec.sha256}
            elif op == "last_upload":
                rec = store.uploads[-1]
                reply = {"size": rec.size, "sha256": rec.sha256}
            else:
                reply = {"error": f"unknown op {op}"}
            print(json.dumps(reply), flush=True)


# -- the client processes ------------------------------------------------------------------


def client_ours(in_path: str, work: str) -> None:
    """Convert, say the size, get the part URLs on stdin, upload, report."""
    from yandexgpt_grpc._cloud_batch_files import convert_input
    from yandexgpt_grpc._cloud_http import HttpTransfer, plan_parts

    started = time.perf_counter()
    conv = convert_input(in_path, dest_dir=work)
    converted = time.perf_counter()
    parts = plan_parts(conv.size)
    print(json.dumps({"path": conv.path, "size": conv.size, "parts": len(parts)}), flush=True)
    urls = json.loads(sys.stdin.readline())["urls"]
    upload_start = time.perf_counter()
    etags = HttpTransfer().put_parts(urls, conv.path, parts)
    done = time.perf_counter()
    report = {
        "etags": etags,
        "convert_s": converted - started,
        "upload_s": done - upload_start,
        "peak_rss_mb": _peak_rss_mb(),
    }
    print(json.dumps(report), flush=True)


def client_plain(path: str) -> None:
    url = json.loads(sys.stdin.readline())["url"]
    size = os.path.getsize(path)
    parts = urlsplit(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120, blocksize=MiB)
    with open(path, "rb") as body:
        conn.request("PUT", f"{parts.path}?{parts.query}", body=body, headers={"Content-Length": str(size)})
        resp = conn.getresponse()
        resp.read()
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"plain PUT failed: HTTP {resp.status}")
    print(json.dumps({"upload_s": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}), flush=True)


# -- orchestration -------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cloud_upload", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    if proc.wait(60):
        raise RuntimeError(f"bench process {proc.args} exited with {proc.returncode}")


def write_input(path: Path, size: int) -> int:
    text = "Summarise this paragraph in one sentence: " + "lorem ipsum dolor sit amet " * 34
    lines = 0
    with open(path, "w", encoding="utf-8") as f:
        while f.tell() < size:
            f.write(json.dumps({"id": lines, "messages": f"{lines} {text}"}) + "\n")
            lines += 1
    return lines


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def run(size_mb: float, work: Path) -> dict[str, Any]:
    in_path = work / "in.jsonl"
    lines = write_input(in_path, int(size_mb * MiB))
    store = _spawn("--serve")
    try:
        ours = _spawn("--client-ours", str(in_path), str(work))
        head = json.loads(ours.stdout.readline())  # type: ignore[union-attr]
        mp = _ask(store, {"op": "multipart", "key": "ours", "size": head["size"], "parts": head["parts"]})
        report = _ask(ours, {"urls": mp["urls"]})
        _finish(ours)
        done = _ask(store, {"op": "complete", "upload_id": mp["upload_id"], "parts": report["etags"]})
        expected = sha256_of(head["path"])
        if done["sha256"] != expected:
            raise RuntimeError("the store reassembled other bytes than the converted file")
        plain = _spawn("--client-plain", head["path"])
        put = _ask(store, {"op": "put", "key": "plain", "size": head["size"]})
        baseline = _ask(plain, put)
        _finish(plain)
        if _ask(store, {"op": "last_upload"})["sha256"] != expected:
            raise RuntimeError("the plain PUT stored other bytes")
    finally:
        _finish(store)
    converted_mb = head["size"] / MiB
    ours_mbs = converted_mb / report["upload_s"]
    plain_mbs = converted_mb / baseline["upload_s"]
    return {
        "in_mb": in_path.stat().st_size / MiB,
        "lines": lines,
        "converted_mb": converted_mb,
        "parts": head["parts"],
        "convert_s": report["convert_s"],
        "ours_upload_s": report["upload_s"],
        "plain_upload_s": baseline["upload_s"],
        "ours_mb_s": ours_mbs,
        "plain_mb_s": plain_mbs,
        "ratio": ours_mbs / plain_mbs,
        "ours_peak_rss_mb": report["peak_rss_mb"],
        "plain_peak_rss_mb": baseline["peak_rss_mb"],
        "ok": report["peak_rss_mb"] < RSS_TARGET_MB and ours_mbs / plain_mbs >= RATIO_TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-ours", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--client-plain", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.client_ours:
        client_ours(*args.client_ours)
        return 0
    if args.client_plain:
        client_plain(args.client_plain)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-cloud-"))
    try:
        res = run(args.size_mb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"cloud upload: IN {res['in_mb']:.0f} MB ({res['lines']} lines) -> {res['converted_mb']:.0f} MB JSONL "
        f"in {res['convert_s']:.1f} s; upload in {res['parts']} parts {res['ours_mb_s']:.0f} MB/s vs plain PUT "
        f"{res['plain_mb_s']:.0f} MB/s (ratio {res['ratio']:.2f}, target >= {RATIO_TARGET}); peak RSS "
        f"{res['ours_peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB}) {'ok' if res['ok'] else 'MISS'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
