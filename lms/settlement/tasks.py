"""Celery tasks of settlement: closing the statements of ended months."""

from __future__ import annotations

from lms.settlement.jobs import close_statements as close_due
from lms.worker import app, run_in_database


@app.task(name="settlement.close_statements")
def close_statements() -> int:
    return len(run_in_database(close_due))
