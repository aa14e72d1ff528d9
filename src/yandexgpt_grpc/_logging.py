"""The package logger and a filter that keeps credentials out of every record."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from ._constants import HEADER_REQUEST_ID, HEADER_TRACE_ID
from ._errors import find_header
from ._public import public

logger = logging.getLogger("yandexgpt_grpc")

# Credentials as they may appear in text: an authorization value (scheme, then the secret), and
# the shapes of Yandex Cloud IAM tokens ("t1.…") and API keys ("AQVN…") on their own. Compiled on the
# first record (re caches it): most processes log nothing, and each pays for what it imports.
_SECRET = (
    r"(?i:\b(api-key|bearer)(\s+|%20|\+))[^\s'\",;)\]}]+"
    r"|\bt1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{80,}=*"
    r"|\bAQVN[A-Za-z0-9_-]{30,}"
)
REDACTED = "<redacted>"


def _mask(match: re.Match[str]) -> str:
    scheme = match.group(1)
    return f"{scheme}{match.group(2)}{REDACTED}" if scheme else REDACTED


def redact(text: str) -> str:
    """Replace anything that looks like a credential with a marker."""
    return re.sub(_SECRET, _mask, text)


class RedactingFilter(logging.Filter):
    """Scrubs API keys and IAM tokens from a record's message, arguments and traceback text.

    Installed on the package's loggers; add it to your own handlers too if they format
    records from other libraries that may carry request metadata.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def get_logger(name: str = "yandexgpt_grpc") -> logging.Logger:
    """A package logger with the redacting filter (a parent's filters do not see children's records)."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log


for _name in ("yandexgpt_grpc", "yandexgpt_grpc.auth", "yandexgpt_grpc.testing"):
    get_logger(_name)


def log_rpc(method: str, code: Any, started: float, attempt: int, client_request_id: str, *, md: Any = ()) -> None:
    """One DEBUG record for one finished RPC; callers only call it when DEBUG was on at its start."""
    logger.debug(
        "rpc %s code=%s duration=%.1fms attempt=%d client_request_id=%s request_id=%s trace_id=%s",
        method,
        getattr(code, "name", code),
        (time.perf_counter() - started) * 1000.0,
        attempt,
        client_request_id,
        find_header(md, HEADER_REQUEST_ID),
        find_header(md, HEADER_TRACE_ID),
    )


public(RedactingFilter)
