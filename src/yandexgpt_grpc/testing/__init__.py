"""Local emulator of the YandexGPT text-generation gRPC API (work in progress)."""

from __future__ import annotations

__all__: list[str] = []
