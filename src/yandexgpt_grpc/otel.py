"""OpenTelemetry GenAI spans and metrics for every client call, opt-in (`pip install 'yandexgpt-grpc[otel]'`).

    from yandexgpt_grpc import otel
    otel.instrument()          # the global tracer and meter providers, or pass your own

Until `instrument()` nothing of OpenTelemetry is imported and a call pays one test of a module
attribute. Prompts and answers are recorded only when
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true; credentials never. README, "OpenTelemetry",
lists every span, attribute and metric.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import _retry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_lock = threading.Lock()


def instrument(tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None) -> None:
    """Record a span and the GenAI metrics for every call of every client from now on.

    Providers left out are OpenTelemetry's global ones. Calling it again while instrumented does
    nothing (call `uninstrument()` first to switch providers).
    """
    with _lock:
        if _retry._hooks is not None:
            return
        try:
            from ._otel import Telemetry
        except ImportError as exc:  # pragma: no cover - depends on what is installed
            raise ImportError(
                "yandexgpt_grpc.otel needs the OpenTelemetry API: pip install 'yandexgpt-grpc[otel]'"
            ) from exc
        _retry._hooks = Telemetry(tracer_provider, meter_provider)


def uninstrument() -> None:
    """Stop recording; calls already running (a stream being read) still end their spans. Idempotent."""
    with _lock:
        _retry._hooks = None


def is_instrumented() -> bool:
    return _retry._hooks is not None
