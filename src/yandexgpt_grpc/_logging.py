"""The package logger and a filter that keeps credentials out of every record."""

from __future__ import annotations

import logging
import re

logger = logging.getLogger("yandexgpt_grpc")

# An authorization value as it may appear in text: the scheme and the secret after it.
_SECRET_RE = re.compile(r"(?i)\b(api-key|bearer)(\s+)[^\s'\",)]+")


def redact(text: str) -> str:
    """Replace anything that looks like an authorization value with a marker."""
    return _SECRET_RE.sub(r"\1\2<redacted>", text)


class RedactingFilter(logging.Filter):
    """Scrubs Api-Key/Bearer values from a record's message and arguments.

    Installed on the package logger; add it to your own handlers too if they
    format records from elsewhere that may carry our metadata.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


logger.addFilter(RedactingFilter())
