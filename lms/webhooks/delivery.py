"""Sending webhooks: one attempt per call, retries with exponential backoff and jitter.

An attempt locks its delivery row (``FOR UPDATE SKIP LOCKED``) for as long as the request
takes, and records the outcome in the same transaction: two workers never send one delivery
at the same time, and a delivery answered 2xx is never sent again. If the worker dies after
the partner answered but before the commit, the delivery is sent again later: receivers
deduplicate on ``Webhook-Id`` (at least once, like every consumer of the outbox).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.db import Database
from lms.webhooks.repository import Sending, WebhookRepository
from lms.webhooks.signing import signature_header

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
LEASE_SECONDS = 60.0
USER_AGENT = "lms-webhooks/1"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """After the n-th failed attempt, wait base x 2^(n-1), capped, times a random factor in
    [0.5, 1] so that many deliveries failing together do not all come back together."""

    max_attempts: int = 10
    base_seconds: float = 60.0
    cap_seconds: float = 6 * 3600.0

    def delay(self, attempts: int) -> timedelta:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter


def webhook_id(delivery_id: int) -> str:
    return f"whd_{delivery_id}"


def body_of(sending: Sending) -> bytes:
    return json.dumps({"id": webhook_id(sending.id), "type": sending.event_type,
                       "createdAt": sending.created_at.isoformat(), "data": sending.payload},
                      separators=(",", ":"), sort_keys=True).encode()


async def _post(client: httpx.AsyncClient, sending: Sending) -> tuple[int | None, str | None]:
    """(status code, error) of one request; never raises for the partner's failures."""
    assert sending.url is not None and sending.secret is not None
    body = body_of(sending)
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "Webhook-Id": webhook_id(sending.id), "Webhook-Timestamp": str(timestamp),
               "Webhook-Signature": signature_header(sending.secret, timestamp, body)}
    try:
        response = await client.post(sending.url, content=body, headers=headers,
                                     timeout=REQUEST_TIMEOUT)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


async def attempt(db: Database, delivery_id: int, attempts: int, *,
                  client: httpx.AsyncClient, policy: RetryPolicy | None = None,
                  now: datetime | None = None) -> str:
    """Make attempt number ``attempts + 1`` of a delivery; returns ``delivered``, ``retry``,
    ``failed``, or ``skipped`` (another sender holds it, or this attempt was made)."""
    policy = policy or RetryPolicy()

    async def work(session: AsyncSession) -> str:
        repo = WebhookRepository(session)
        sending = await repo.lock_for_sending(delivery_id, attempts)
        if sending is None:
            return "skipped"
        code: int | None
        error: str | None
        if sending.url is None or sending.secret is None:
            code, error = None, "the partner has no webhook URL or secret"
            made = policy.max_attempts  # nothing to retry against
        else:
            code, error = await _post(client, sending)
            made = sending.attempts + 1
        at = now or utcnow()
        if error is None:
            outcome = "delivered"
        elif made >= policy.max_attempts:
            outcome = "failed"
        else:
            outcome = "retry"
        await repo.record_attempt(
            delivery_id, status="pending" if outcome == "retry" else outcome, now=at,
            code=code, error=error,
            next_at=at + policy.delay(made) if outcome == "retry" else at)
        log.log(logging.INFO if error is None else logging.WARNING,
                "webhook %s %s to partner %d: attempt %d %s%s", webhook_id(delivery_id),
                sending.event_type, sending.partner_id, made, outcome,
                "" if error is None else f" ({error})")
        return outcome

    result: str = await db.transaction(work)
    return result


async def claim_due(db: Database, *, limit: int = 500, now: datetime | None = None,
                    lease_seconds: float = LEASE_SECONDS) -> list[tuple[int, int]]:
    """(delivery id, attempts made) of due deliveries, leased for ``lease_seconds``: the
    sweep hands each to a ``webhooks.deliver`` task; if the task is lost, the lease runs out
    and the next sweep hands it over again."""
    result: list[tuple[int, int]] = await db.transaction(
        lambda s: WebhookRepository(s).claim_due(now or utcnow(), limit, lease_seconds))
    return result


async def deliver_due(db: Database, client: httpx.AsyncClient, *,
                      policy: RetryPolicy | None = None, now: datetime | None = None
                      ) -> list[str]:
    """Claim the due deliveries and attempt each one here, one after the other."""
    return [await attempt(db, delivery_id, attempts, client=client, policy=policy, now=now)
            for delivery_id, attempts in await claim_due(db, now=now)]
