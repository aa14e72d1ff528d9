"""The library's messages in command-line words: flags and environment variables, not parameters."""

from __future__ import annotations

import re

# Library parameter -> the flag that sets it.
FLAGS = {
    "api_key": "--api-key",
    "iam_token": "--iam-token",
    "folder_id": "--folder-id",
    "endpoint": "--endpoint",
    "insecure": "--insecure",
    "timeout": "--timeout",
    "model": "--model",
    "temperature": "--temperature",
    "max_tokens": "--max-tokens",
    "poll_interval": "--poll-interval",
    "concurrency": "--concurrency",
    "rps": "--rps",
    "operation_id": "ID",
}
_NAMES = "|".join(FLAGS)
# The patterns are compiled on first use (re caches them): only a failing command needs them, and
# compiling them all took ~6 M instructions of every start-up.
# `pass folder_id= or ...`, `insecure=True sends ...`, `max_tokens must be ...`, `model= (--model)`
_ASSIGNED = rf"\b({_NAMES})=(?:True\b)?(?: \(--[a-z-]+\))?"
_SUBJECT = rf"^({_NAMES})\b(?= must| is| should)"
_REPLACED = (
    (
        r"^messages is empty: give at least one message.*$",
        "no text to send: give it as an argument, with --user-text, or on stdin",
    ),
    (
        r"\bpass only one of (credentials=, )?--api-key, --iam-token( \(got [^)]*\))?",
        "pass only one of --api-key and --iam-token",
    ),
)

_TOO_LARGE = r"larger than max \((\d+) vs\. (\d+)\)"


def cli_wording(message: str) -> str:
    """Rewrite a library error for the command line (unknown messages pass unchanged)."""
    message = re.sub(_ASSIGNED, lambda m: FLAGS[m.group(1)], message)
    message = re.sub(_SUBJECT, lambda m: FLAGS[m.group(1)], message)
    for pattern, replacement in _REPLACED:
        message = re.sub(pattern, replacement, message)
    return message


def _mb(size: int) -> str:
    mb = size / 2**20
    return f"{mb:.0f}" if size % 2**20 == 0 else f"{mb:.1f}"


def too_large(details: str, sent: int) -> str | None:
    """grpc's "Received message larger than max (N vs. M)" as a sentence, or None if it is not that.

    N about the size of what we sent (the text plus the request's framing) means the server refused
    our request; else the answer was larger than this side's receive limit.
    """
    m = re.search(_TOO_LARGE, details)
    if m is None:
        return None
    size, limit = int(m.group(1)), int(m.group(2))
    what = "the prompt" if sent <= size <= sent + 2**20 else "the answer"
    return f"{what} is too large ({_mb(size)} MB; the limit is {_mb(limit)} MB)"
