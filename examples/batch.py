"""Answer a JSONL file of prompts with run_batch: resumable, rate-limited, one result line per id.

    YC_API_KEY=... YC_FOLDER_ID=... python examples/batch.py prompts.jsonl answers.jsonl --rps 5

Each input line is {"id": ..., "messages": ..., <options such as temperature>}. Run it again after
a crash or Ctrl-C and it continues where it stopped. With --demo N it first writes N sample prompts.
"""

from __future__ import annotations

import argparse
import json
import sys

from yandexgpt_grpc import run_batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--endpoint", help="gRPC target (default: $YANDEXGPT_ENDPOINT or the cloud)")
    parser.add_argument("--insecure", action="store_true", default=None, help="plaintext, for a local emulator")
    parser.add_argument("--model", default="yandexgpt-lite")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rps", type=float, default=None, help="requests started per second")
    parser.add_argument("--demo", type=int, metavar="N", help="first write N sample prompts to INPUT")
    args = parser.parse_args()

    if args.demo:
        with open(args.input, "w", encoding="utf-8") as f:
            for i in range(args.demo):
                line = {"id": f"p{i}", "messages": [{"role": "user", "text": f"Name a prime number above {i}"}]}
                f.write(json.dumps(line) + "\n")

    summary = run_batch(
        args.input,
        args.output,
        model=args.model,
        concurrency=args.concurrency,
        rps=args.rps,
        on_problem=lambda problem: print(f"skipped {problem}", file=sys.stderr),
        endpoint=args.endpoint,
        insecure=args.insecure,
    )
    print(
        f"{summary.succeeded} answered, {summary.failed} failed, {summary.skipped} already done "
        f"in {summary.elapsed:.1f}s"
    )
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
