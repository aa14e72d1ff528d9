"""Ask many questions at once with AsyncClient, at most N in flight, answers printed in order.

YC_API_KEY=... YC_FOLDER_ID=... python examples/async_fanout.py "What is gRPC?" "What is HTTP/2?"
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from yandexgpt_grpc import AsyncClient, YandexGPTError


async def ask_all(client: AsyncClient, model: str, questions: list[str], limit: int) -> list[str]:
    gate = asyncio.Semaphore(limit)  # the API's default quotas are small: keep the fan-out bounded

    async def ask(question: str) -> str:
        async with gate:
            try:
                result = await client.complete(model, question, max_tokens=300)
            except YandexGPTError as exc:  # one failure should not sink the others
                return f"(failed: {exc})"
            return result.text

    return await asyncio.gather(*(ask(q) for q in questions))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+")
    parser.add_argument("--endpoint", help="gRPC target (default: $YANDEXGPT_ENDPOINT or the cloud)")
    parser.add_argument("--insecure", action="store_true", default=None, help="plaintext, for a local emulator")
    parser.add_argument("--model", default="yandexgpt-lite")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    async with AsyncClient(args.endpoint, insecure=args.insecure) as client:
        answers = await ask_all(client, args.model, args.questions, args.concurrency)
    for question, answer in zip(args.questions, answers, strict=True):
        print(f"Q: {question}\nA: {answer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
