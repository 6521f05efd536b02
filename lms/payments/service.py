"""Receiving the provider's webhooks: record each payment once, then settle its purchase."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.ledger.service import SystemAccounts
from lms.payments.repository import PaymentRepository
from lms.payments.schemas import Outcome, WebhookEvent
from lms.purchases.service import PurchaseService
from lms.settings import Settings


@dataclass(frozen=True, slots=True)
class Receipt:
    outcome: Outcome
    replayed: bool


class PaymentService:
    def __init__(self, session: AsyncSession, system: SystemAccounts,
                 settings: Settings) -> None:
        self.repo = PaymentRepository(session)
        self.purchases = PurchaseService(session, system, settings)

    async def receive(self, event: WebhookEvent, body: dict[str, Any]) -> Receipt:
        """Apply a verified webhook once per provider payment id: a replay (also a
        concurrent one) finds the first row and changes nothing."""
        row_id = await self.repo.record(
            provider_payment_id=event.payment_id, event_id=event.id,
            reference=event.reference, status=event.status, amount_minor=event.amount,
            currency=event.currency, outcome="received", body=body)
        if row_id is None:
            earlier = await self.repo.by_payment_id(event.payment_id)
            assert earlier is not None
            return Receipt(Outcome(earlier.outcome), replayed=True)
        outcome = await self.purchases.settle(event)
        await self.repo.set_outcome(row_id, outcome)
        return Receipt(outcome, replayed=False)
