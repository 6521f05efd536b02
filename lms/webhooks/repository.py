"""SQL of webhooks: signing secrets, deliveries (enqueue once, claim, record each attempt)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms.webhooks.models import WebhookDelivery, WebhookSecret

# Due deliveries get a lease (next_attempt_at moved on) as they are handed to a task, so a
# sweep every few seconds does not queue the same delivery again while the first is waiting.
CLAIM_DUE = text("""
UPDATE webhook_deliveries d
SET next_attempt_at = CAST(:now AS timestamptz) + make_interval(secs => :lease)
FROM (SELECT id FROM webhook_deliveries
      WHERE status = 'pending' AND next_attempt_at <= CAST(:now AS timestamptz)
      ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED) due
WHERE d.id = due.id
RETURNING d.id, d.attempts
""")

# Held FOR UPDATE while the request is sent: a second sender skips the row instead of
# sending it again. ``attempts`` must still be what the task was queued for: a task queued
# twice for one attempt finds it done and does nothing.
LOCK_FOR_SENDING = text("""
SELECT d.id, d.partner_id, d.event_id, d.event_type, d.payload, d.attempts, d.created_at,
       p.webhook_url, s.secret
FROM webhook_deliveries d
JOIN partners p ON p.id = d.partner_id
LEFT JOIN webhook_secrets s ON s.partner_id = d.partner_id
WHERE d.id = :id AND d.status = 'pending' AND d.attempts = :attempts
FOR UPDATE OF d SKIP LOCKED
""")

RECORD_ATTEMPT = text("""
UPDATE webhook_deliveries SET attempts = attempts + 1, status = CAST(:status AS varchar),
  last_attempt_at = CAST(:now AS timestamptz), last_status_code = :code,
  last_error = :error, next_attempt_at = :next_at,
  delivered_at = CASE WHEN CAST(:status AS varchar) = 'delivered'
                      THEN CAST(:now AS timestamptz) END
WHERE id = :id
""")


@dataclass(frozen=True, slots=True)
class Sending:
    """A delivery locked for one attempt, with where and how to send it."""

    id: int
    partner_id: int
    event_id: int
    event_type: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    url: str | None
    secret: str | None


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- secrets ---------------------------------------------------------------------------

    async def secret(self, partner_id: int) -> WebhookSecret | None:
        return await self.session.get(WebhookSecret, partner_id)

    async def set_secret(self, partner_id: int, secret: str) -> WebhookSecret:
        stmt = pg_insert(WebhookSecret).values(partner_id=partner_id, secret=secret)
        stmt = stmt.on_conflict_do_update(index_elements=[WebhookSecret.partner_id], set_={
            "secret": stmt.excluded.secret, "created_at": text("now()")})
        return (await self.session.execute(stmt.returning(WebhookSecret))).scalar_one()

    # -- deliveries ------------------------------------------------------------------------

    async def hold_actor(self, hold_id: int) -> tuple[str, str | None] | None:
        row = (await self.session.execute(text(
            "SELECT actor_type, actor_id FROM holds WHERE id = :id"), {"id": hold_id})).first()
        return None if row is None else (row.actor_type, row.actor_id)

    async def has_webhook(self, partner_id: int) -> bool:
        """Whether the partner has both a webhook URL and a secret to sign with."""
        found: bool = (await self.session.execute(text(
            "SELECT EXISTS (SELECT 1 FROM partners p JOIN webhook_secrets s "
            "ON s.partner_id = p.id WHERE p.id = :id AND p.webhook_url IS NOT NULL)"),
            {"id": partner_id})).scalar_one()
        return found

    async def enqueue(self, *, partner_id: int, event_id: int, event_type: str,
                      payload: dict[str, Any]) -> int | None:
        """The new delivery's id, or None when this event was enqueued for the partner
        before (the relay hands an event over at least once)."""
        delivery_id: int | None = (await self.session.execute(
            pg_insert(WebhookDelivery).values(
                partner_id=partner_id, event_id=event_id, event_type=event_type,
                payload=payload)
            .on_conflict_do_nothing(constraint="uq_webhook_deliveries_partner_event")
            .returning(WebhookDelivery.id))).scalar_one_or_none()
        return delivery_id

    async def claim_due(self, now: datetime, limit: int, lease_seconds: float
                        ) -> list[tuple[int, int]]:
        rows = await self.session.execute(CLAIM_DUE, {"now": now, "limit": limit,
                                                      "lease": lease_seconds})
        return [(r.id, r.attempts) for r in rows]

    async def lock_for_sending(self, delivery_id: int, attempts: int) -> Sending | None:
        row = (await self.session.execute(LOCK_FOR_SENDING, {
            "id": delivery_id, "attempts": attempts})).first()
        if row is None:
            return None
        return Sending(id=row.id, partner_id=row.partner_id, event_id=row.event_id,
                       event_type=row.event_type, payload=row.payload, attempts=row.attempts,
                       created_at=row.created_at, url=row.webhook_url, secret=row.secret)

    async def record_attempt(self, delivery_id: int, *, status: str, now: datetime,
                             code: int | None, error: str | None, next_at: datetime) -> None:
        await self.session.execute(RECORD_ATTEMPT, {
            "id": delivery_id, "status": status, "now": now, "code": code,
            "error": error, "next_at": next_at})

    async def deliveries(self, partner_id: int, limit: int) -> list[WebhookDelivery]:
        return list((await self.session.execute(
            select(WebhookDelivery).where(WebhookDelivery.partner_id == partner_id)
            .order_by(WebhookDelivery.id.desc()).limit(limit))).scalars())
