"""Celery task of claims: match pending claims to credited coupons, reject expired ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from lms.claims.service import MATCH_BATCH, ClaimService
from lms.db import Database
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClaimRun:
    credited: int
    rejected: int


async def resolve_claims(db: Database, *, on: date | None = None,
                         limit: int = MATCH_BATCH) -> ClaimRun:
    """Match, then reject, ``limit`` claims per transaction until none is left."""
    credited = rejected = 0
    while (n := await db.transaction(
            lambda s: ClaimService(s).match_pending(limit=limit))) > 0:
        credited += n
    while (n := await db.transaction(
            lambda s: ClaimService(s).reject_expired(on=on, limit=limit))) > 0:
        rejected += n
    return ClaimRun(credited, rejected)


@app.task(name="claims.resolve")
def resolve() -> int:
    run = run_in_database(lambda db: resolve_claims(db))
    if run.credited or run.rejected:
        log.info("claims: %d credited, %d rejected", run.credited, run.rejected)
    return run.credited + run.rejected
