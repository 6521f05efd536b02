"""Outbox consumers that turn domain events into webhook deliveries.

They run inside the relay's transaction (``relay_session``): the delivery row commits with the
event's publication, or neither does and the relay hands the event over again; the unique
(partner, event id) makes that second hand-over enqueue nothing. Only partners with a
webhook URL and secret get deliveries; what goes out is the partner's view of the event,
never internal ids of the programme's accounts.
"""

from __future__ import annotations

from typing import Any

from lms.outbox.relay import ConsumerRegistry, relay_session
from lms.outbox.repository import Event
from lms.webhooks.repository import WebhookRepository

HOLD_EXPIRED = "hold.expired"
ACCRUAL_REVERSED = "accrual.reversed"
STATEMENT_CLOSED = "statement.closed"
TOPICS = (HOLD_EXPIRED, ACCRUAL_REVERSED, STATEMENT_CLOSED)


def partner_view(event: Event) -> dict[str, Any]:
    p = event.payload
    if event.topic == HOLD_EXPIRED:
        return {"holdId": p["holdId"], "miles": p["amount"], "status": "expired",
                "orderReference": p.get("reference")}
    if event.topic == ACCRUAL_REVERSED:
        return {"partnerTxnId": p["partnerTxnId"], "amount": p["amount"],
                "miles": p["miles"]}
    return {k: v for k, v in p.items() if k != "partnerId"}


async def partner_of(repo: WebhookRepository, event: Event) -> int | None:
    if event.topic == HOLD_EXPIRED:
        actor = await repo.hold_actor(int(event.payload["holdId"]))
        if actor is None or actor[0] != "partner" or actor[1] is None:
            return None  # a member's own or the system's hold: no partner to tell
        return int(actor[1])
    partner_id = event.payload.get("partnerId")
    return None if partner_id is None else int(partner_id)


async def enqueue_webhook(event: Event) -> None:
    repo = WebhookRepository(relay_session.get())
    partner_id = await partner_of(repo, event)
    if partner_id is None or not await repo.has_webhook(partner_id):
        return
    await repo.enqueue(partner_id=partner_id, event_id=event.id, event_type=event.topic,
                       payload=partner_view(event))


def register(registry: ConsumerRegistry) -> None:
    for topic in TOPICS:
        registry.register(topic, enqueue_webhook)
