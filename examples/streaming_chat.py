"""A terminal chat: each line you type is sent with the conversation so far; the answer streams back.

    YC_API_KEY=... YC_FOLDER_ID=... python examples/streaming_chat.py
    python examples/streaming_chat.py --endpoint 127.0.0.1:50051 --insecure   # e.g. an emulator

Credentials and the folder come from the environment (YC_API_KEY or YC_IAM_TOKEN, YC_FOLDER_ID).
An empty line or end of input (Ctrl-D) ends the chat.
"""

from __future__ import annotations

import argparse
import sys

from yandexgpt_grpc import Client, Message, TextReset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="gRPC target (default: $YANDEXGPT_ENDPOINT or the cloud)")
    parser.add_argument("--insecure", action="store_true", default=None, help="plaintext, for a local emulator")
    parser.add_argument("--model", default="yandexgpt-lite")
    parser.add_argument("--system", default="You are a concise assistant.")
    args = parser.parse_args()

    history = [Message.system(args.system)]
    with Client(args.endpoint, insecure=args.insecure) as client:
        for line in sys.stdin:
            question = line.strip()
            if not question:
                break
            history.append(Message.user(question))
            print("assistant> ", end="", flush=True)
            with client.stream(args.model, history, temperature=0.3) as stream:
                for piece in stream.text_stream:
                    if isinstance(piece, TextReset):  # the server replaced the text: start over
                        print("\n[replaced] ", end="")
                    print(piece, end="", flush=True)
                answer = stream.get_final().text
            print()
            history.append(Message.assistant(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
