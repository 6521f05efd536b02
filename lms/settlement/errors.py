"""Errors of partner statements, each with a stable code."""

from __future__ import annotations

from lms.errors import ValidationFailed


class InvalidMonth(ValidationFailed):
    code = "invalid_month"
    title = "The month must be written YYYY-MM, e.g. 2026-11"


class MonthInFuture(ValidationFailed):
    code = "month_in_future"
    title = "The month has not begun yet"


class MonthNotOver(ValidationFailed):
    code = "month_not_over"
    title = "A month is closed only after it has ended (and a grace period has passed)"
