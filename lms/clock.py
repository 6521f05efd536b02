"""The current time, always timezone-aware UTC (DESIGN §6)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
