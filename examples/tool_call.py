"""A tool call round trip: the model asks for a function call, we run it, it answers with the result.

    YC_API_KEY=... YC_FOLDER_ID=... python examples/tool_call.py "What's the weather in Moscow?"

`--tool-choice required` forces the call (handy against the emulator, which calls tools only when
told to); the default lets the model decide.
"""

from __future__ import annotations

import argparse
import sys

from yandexgpt_grpc import Client, Message, function_tool


@function_tool
def get_weather(city: str, unit: str = "celsius") -> dict[str, object]:
    """The current weather in a city.

    Args:
        city: City name, e.g. "Moscow".
        unit: "celsius" or "fahrenheit".
    """
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit, "sky": "clear"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What's the weather in Moscow?")
    parser.add_argument("--endpoint", help="gRPC target (default: $YANDEXGPT_ENDPOINT or the cloud)")
    parser.add_argument("--insecure", action="store_true", default=None, help="plaintext, for a local emulator")
    parser.add_argument("--model", default="yandexgpt")
    parser.add_argument("--tool-choice", default="auto", choices=["auto", "required", "none"])
    args = parser.parse_args()

    tools = [get_weather]
    history = [Message.user(args.question)]
    with Client(args.endpoint, insecure=args.insecure) as client:
        result = client.complete(args.model, history, tools=tools, tool_choice=args.tool_choice)
        while result.tool_calls:  # the model may ask for several calls, over several rounds
            history.append(Message.assistant(tool_calls=result.tool_calls))
            answers = [get_weather.invoke(call) for call in result.tool_calls]
            for call, answer in zip(result.tool_calls, answers, strict=True):
                print(f"called {call.name}({dict(call.arguments)}) -> {answer.content}")
            history.append(Message.with_tool_results(answers))
            result = client.complete(args.model, history, tools=tools)
    print(result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
