"""What the server and the workers agree on: names, sizes, CPU pinning."""

from __future__ import annotations

import os

MODEL_URI = "gpt://b1gbench/yandexgpt-lite/latest"
API_KEY = "bench-key"
PROMPT = "To be, or not to be: that is the question."
SERVICE = "yandex.cloud.ai.foundation_models.v1.TextGenerationService"


def cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return []


def pin(cpu: int | None) -> None:
    """Pin this process to one CPU so server and client do not steal each other's core."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
