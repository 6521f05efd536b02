"""Buying miles and status: pending purchases with their price and a payment at the provider,
settled by the provider's webhook (see lms.payments).

Rules of the money path:

- a purchase is priced when it is created, from the rules in force then; the provider is paid
  exactly that amount in that currency, or the payment is refused and flagged for refund;
- miles are posted only when the payment is confirmed, once (the purchase's reference is the
  ledger entry's external reference);
- a member's mile purchases in a calendar year (UTC, by the day the purchase was made) stay
  under the yearly cap, pending ones included: the member row is locked while the cap is
  checked, so concurrent purchases queue;
- a purchase not paid within ``LMS_PURCHASE_PENDING_TTL_SECONDS`` expires. A success webhook
  that arrives after that is refused: the purchase stays expired, nothing is posted, the
  payment is recorded and the purchase flagged ``refundDue`` (crediting it would let expired
  purchases slip past the yearly cap, which stopped counting them);
- a bought tier is held to the end of the next qualification period
  (``TierService.grant``). A member who meanwhile reached a higher tier keeps it: the
  purchase completes without change and is flagged ``refundDue``; a member who meanwhile
  reached the same tier gets the later of the two validities.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.clock import utcnow
from lms.ledger.errors import AccountClosed
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind, Leg, SystemAccount, Unit
from lms.outbox.service import emit
from lms.payments.client import (
    HttpPaymentProvider,
    PaymentProvider,
    PaymentRequest,
    return_url,
    webhook_url,
)
from lms.payments.schemas import Outcome, WebhookEvent
from lms.purchases.errors import (
    InvalidMilesAmount,
    MemberNotActive,
    PurchaseNotFound,
    PurchasesUnavailable,
    StatusNotOffered,
    YearlyCapExceeded,
)
from lms.purchases.models import Purchase
from lms.purchases.repository import PurchaseRepository
from lms.purchases.rules import (
    MILES,
    STATUS,
    MileRules,
    StatusRules,
    decode,
    status_price,
    within_reach,
)
from lms.purchases.schemas import Money, StatusOffer, StatusOffers
from lms.settings import Settings
from lms.tiers.policy import upgrade_valid_until
from lms.tiers.service import MemberProgress, TierService

SOURCE = "purchase"


def new_reference(kind: str) -> str:
    return f"{'mp' if kind == MILES else 'sp'}_{uuid.uuid4().hex}"


class PurchaseService:
    def __init__(self, session: AsyncSession, system: SystemAccounts, settings: Settings,
                 provider: PaymentProvider | None = None) -> None:
        self.session = session
        self.repo = PurchaseRepository(session)
        self.system = system
        self.settings = settings
        self.provider = provider or HttpPaymentProvider.from_settings(settings)
        self.tiers = TierService(session)

    # -- rules -----------------------------------------------------------------------------

    async def mile_rules(self, now: datetime) -> MileRules:
        body = await self.repo.rule_at(MILES, now.date())
        if body is None:
            raise PurchasesUnavailable("No rules for buying miles are in force")
        rules = decode(MILES, body)
        assert isinstance(rules, MileRules)
        return rules

    async def status_rules(self, now: datetime) -> StatusRules:
        body = await self.repo.rule_at(STATUS, now.date())
        if body is None:
            raise PurchasesUnavailable("No rules for buying status are in force")
        rules = decode(STATUS, body)
        assert isinstance(rules, StatusRules)
        return rules

    async def _active_member(self, member_id: int, *, lock: bool = False) -> Any:
        member = await self.repo.member(member_id, lock=lock)
        if member is None:
            raise MemberNotFound()
        if member.status != "active":
            raise MemberNotActive(f"The membership is {member.status}")
        return member

    # -- buying miles ------------------------------------------------------------------------

    async def buy_miles(self, member_id: int, miles: int, reference: str) -> Purchase:
        now = utcnow()
        rules = await self.mile_rules(now)
        if not rules.allowed(miles):
            raise InvalidMilesAmount(
                f"Buy {rules.min_miles:,} to {rules.max_miles:,} miles in steps of "
                f"{rules.step_miles:,}", minMiles=rules.min_miles, maxMiles=rules.max_miles,
                stepMiles=rules.step_miles)
        await self._active_member(member_id)
        # Checked before the provider is asked for a payment (no payment for a refusal) and
        # again under the member's lock (the decision that counts).
        await self._check_cap(rules, member_id, miles, now)
        amount = rules.price(miles)
        payment = await self.provider.create_payment(PaymentRequest(
            amount=amount, currency=rules.currency, reference=reference,
            description=f"{miles:,} miles", return_url=return_url(self.settings, reference),
            webhook_url=webhook_url(self.settings)))
        await self._active_member(member_id, lock=True)
        await self._check_cap(rules, member_id, miles, now)
        purchase = await self.repo.add(
            reference=reference, member_id=member_id, kind=MILES, miles=miles,
            amount_minor=amount, currency=rules.currency, cap_year=now.year,
            provider_payment_id=payment.id, payment_url=payment.payment_url,
            expires_at=now + timedelta(seconds=self.settings.purchase_pending_ttl_seconds))
        await emit(self.session, "purchase.created", event(purchase))
        return purchase

    async def _check_cap(self, rules: MileRules, member_id: int, miles: int,
                         now: datetime) -> None:
        bought = await self.repo.bought_in_year(member_id, now.year, now)
        if bought + miles > rules.yearly_cap:
            remaining = max(0, rules.yearly_cap - bought)
            raise YearlyCapExceeded(
                f"{bought:,} of the yearly {rules.yearly_cap:,} miles are bought or pending "
                f"in {now.year}; at most {remaining:,} more", yearlyCap=rules.yearly_cap,
                bought=bought, remaining=remaining)

    # -- buying status -----------------------------------------------------------------------

    async def offers(self, member_id: int, *, now: datetime | None = None) -> StatusOffers:
        now = now or utcnow()
        rules = await self.status_rules(now)
        standing = await self.tiers.progress(member_id, now=now)
        return StatusOffers(
            tier=standing.tier.code, qualification=str(standing.policy),
            status_miles=standing.progress.status_miles, segments=standing.progress.segments,
            min_progress_percent=rules.min_progress_percent,
            offers=self._offers(rules, standing, now))

    def _offers(self, rules: StatusRules, standing: MemberProgress, now: datetime
                ) -> list[StatusOffer]:
        offers = []
        until = upgrade_valid_until(standing.policy, now)
        for tier in standing.ladder.tiers:
            if tier.rank <= standing.tier.rank:
                continue
            if not within_reach(tier, standing.progress, rules.min_progress_percent):
                continue
            price = status_price(rules, tier, standing.progress)
            if price is None:
                continue
            offers.append(StatusOffer(
                tier=tier.code, name=tier.name, price=Money(price, rules.currency),
                missing_status_miles=max(0, tier.status_miles
                                         - standing.progress.status_miles),
                missing_segments=max(0, tier.segments - standing.progress.segments),
                valid_until=until))
        return offers

    async def buy_status(self, member_id: int, tier: str, reference: str) -> Purchase:
        now = utcnow()
        await self._active_member(member_id)
        offer = next((o for o in (await self.offers(member_id, now=now)).offers
                      if o.tier == tier), None)
        if offer is None:
            raise StatusNotOffered(f"{tier} is not offered now; see the offers")
        payment = await self.provider.create_payment(PaymentRequest(
            amount=offer.price.amount, currency=offer.price.currency, reference=reference,
            description=f"{offer.name} status", return_url=return_url(self.settings, reference),
            webhook_url=webhook_url(self.settings)))
        purchase = await self.repo.add(
            reference=reference, member_id=member_id, kind=STATUS, tier=tier,
            amount_minor=offer.price.amount, currency=offer.price.currency,
            cap_year=now.year, provider_payment_id=payment.id,
            payment_url=payment.payment_url,
            expires_at=now + timedelta(seconds=self.settings.purchase_pending_ttl_seconds))
        await emit(self.session, "purchase.created", event(purchase))
        return purchase

    # -- reading -----------------------------------------------------------------------------

    async def get(self, member_id: int, kind: str, purchase_id: int) -> Purchase:
        purchase = await self.repo.of_member(member_id, kind, purchase_id)
        if purchase is None:
            raise PurchaseNotFound()
        return purchase

    async def list_of(self, member_id: int, kind: str, limit: int = 50) -> list[Purchase]:
        return await self.repo.list_of_member(member_id, kind, limit)

    async def refunds_due(self, limit: int = 100) -> list[Purchase]:
        """Payments taken that bought nothing, newest first: for finance to refund at the
        provider."""
        return await self.repo.refunds_due(limit)

    async def by_reference(self, reference: str) -> Purchase | None:
        return await self.repo.by_reference(reference)

    # -- settling (called by lms.payments for a verified, first-seen webhook) ---------------

    async def settle(self, payment: WebhookEvent) -> Outcome:
        now = utcnow()
        purchase = await self.repo.by_reference(payment.reference, lock=True)
        if purchase is None:
            return Outcome.UNKNOWN_REFERENCE
        if purchase.provider_payment_id != payment.payment_id:
            return Outcome.PAYMENT_MISMATCH
        if payment.status != "succeeded":
            if purchase.status != "pending":
                return Outcome.IGNORED
            await self._close(purchase, "canceled", now, note=f"payment {payment.status}")
            return Outcome.CANCELED
        if purchase.status == "pending" and purchase.expires_at <= now:
            # Not yet swept by the expiry job: it is expired all the same.
            purchase = await self._close(purchase, "expired", now, note="not paid in time")
        if purchase.status != "pending":
            await self.repo.close(purchase.id, refund_due=True,
                                  note=f"paid while {purchase.status}; refund due")
            await emit(self.session, "purchase.refund_due", event(purchase))
            return Outcome.EXPIRED if purchase.status == "expired" else Outcome.NOT_PENDING
        if payment.amount != purchase.amount_minor or payment.currency != purchase.currency:
            await self._close(purchase, "rejected", now, refund_due=True,
                              note=f"paid {payment.amount} {payment.currency}, price "
                                   f"{purchase.amount_minor} {purchase.currency}")
            return Outcome.AMOUNT_MISMATCH
        if purchase.kind == MILES:
            return await self._complete_miles(purchase, payment, now)
        return await self._complete_status(purchase, now)

    async def _complete_miles(self, purchase: Purchase, payment: WebhookEvent,
                              now: datetime) -> Outcome:
        member = await self.repo.member(purchase.member_id)
        assert member is not None and purchase.miles is not None
        ledger = Ledger(self.session, self.system)
        await ledger.repo()  # loads the system accounts in a fresh process
        try:
            entry = await ledger.post(
                kind=EntryKind.PURCHASE, actor=Actor("member", str(purchase.member_id)),
                description=f"{purchase.miles:,} miles bought", source=SOURCE,
                external_ref=purchase.reference,
                legs=[Leg(self.system.pick(SystemAccount.PURCHASES), Unit.MILES,
                          -purchase.miles),
                      Leg(member.account_id, Unit.MILES, purchase.miles)],
                details={"purchaseId": purchase.id, "amount": purchase.amount_minor,
                         "currency": purchase.currency, "paymentId": payment.payment_id},
                events=[("purchase.completed",
                         event(purchase) | {"status": "completed"})])
        except AccountClosed:
            await self._close(purchase, "rejected", now, refund_due=True,
                              note="the member's account is closed; refund due")
            return Outcome.NOT_PENDING
        await self._close(purchase, "completed", now, entry_id=entry.id)
        return Outcome.COMPLETED

    async def _complete_status(self, purchase: Purchase, now: datetime) -> Outcome:
        assert purchase.tier is not None
        policy = (await self.tiers.policies(now)).qualification
        grant = await self.tiers.grant(purchase.member_id, purchase.tier,
                                       valid_until=upgrade_valid_until(policy, now), now=now)
        note = (f"the member already holds {grant.tier}; refund due" if grant.exceeded
                else None)
        closed = await self._close(purchase, "completed", now, valid_until=grant.valid_until,
                                   refund_due=grant.exceeded, note=note)
        await emit(self.session, "purchase.completed", event(closed))
        return Outcome.COMPLETED

    async def _close(self, purchase: Purchase, status: str, now: datetime,
                     **values: Any) -> Purchase:
        closed = await self.repo.close(purchase.id, status=status, closed_at=now, **values)
        if status in ("canceled", "expired", "rejected"):
            await emit(self.session, f"purchase.{status}", event(closed))
        return closed

    # -- the expiry job ----------------------------------------------------------------------

    async def expire_pending(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        rows = await self.repo.expire_due(now or utcnow(), limit)
        for r in rows:
            await emit(self.session, "purchase.expired", {
                "purchaseId": r.id, "memberId": r.member_id, "kind": r.kind,
                "reference": r.reference, "miles": r.miles, "tier": r.tier})
        return len(rows)


def event(p: Purchase) -> dict[str, Any]:
    return {"purchaseId": p.id, "memberId": p.member_id, "kind": p.kind,
            "reference": p.reference, "miles": p.miles, "tier": p.tier,
            "amount": p.amount_minor, "currency": p.currency, "status": p.status}
