"""Gifting miles: one member gives miles to another, paying a fee, within daily and yearly
limits.

Terms are versions with effective dates in ``gift_rules`` (programme file section
``gift_rules``); without one in force, DEFAULT_TERMS apply. Limits count the miles given,
not the fee, per calendar day and year in the member's own time zone.

Exactness under concurrency: a gift takes transaction-scoped advisory locks on the sender
and the recipient, in member id order, before it counts what they sent and received today
and this year, and keeps them until commit; the next gift of either member counts after it.
Not the member rows themselves: the flight feed locks balance rows before member rows
(lms.accrual), and a gift posts to balance rows after its count, so locking member rows
here would deadlock with a concurrent flight credit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.db import RawConnection, raw_connection
from lms.family.errors import MemberLocked
from lms.gifts.errors import (
    GiftLimitExceeded,
    GiftTooSmall,
    GiftToSelf,
    RecipientNotActive,
    RecipientNotFound,
)
from lms.gifts.repository import ADVISORY_NAMESPACE, SEND_FACTS, GiftRepository
from lms.gifts.schemas import GiftCreate, GiftOut, GiftParty, GiftTermsOut
from lms.idempotency.service import Facts
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind, Leg, SystemAccount, Unit

BP = 10_000


@dataclass(frozen=True, slots=True)
class GiftTerms:
    rule_id: int | None = None
    fee_bp: int = 500
    fee_minimum: int = 100
    min_miles: int = 500
    daily_limit: int = 50_000
    yearly_limit: int = 200_000
    daily_received_limit: int | None = None
    yearly_received_limit: int | None = None

    def fee(self, miles: int) -> int:
        """The percentage rounded up to a whole mile, never below the minimum."""
        return max(self.fee_minimum, -(-miles * self.fee_bp // BP))


DEFAULT_TERMS = GiftTerms()


def name_key(name: str) -> str:
    """A last name as compared: case, accents and spacing do not matter (Müller = MULLER,
    "de la Cruz" = "De La  Cruz")."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(letters.replace("-", " ").split())


def local_starts(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The start of the member's current day and year, as aware datetimes."""
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(month=1, day=1)


def terms_of(row: asyncpg.Record, rule_id: int | None = None) -> GiftTerms:
    """The terms of a ``gift_rules`` row (SEND_FACTS names its id ``rule_id``), the
    defaults when there is none."""
    rule_id = row["rule_id"] if rule_id is None else rule_id
    if rule_id is None:
        return DEFAULT_TERMS
    return GiftTerms(rule_id=rule_id, fee_bp=row["fee_bp"], fee_minimum=row["fee_minimum"],
                     min_miles=row["min_miles"], daily_limit=row["daily_limit"],
                     yearly_limit=row["yearly_limit"],
                     daily_received_limit=row["daily_received_limit"],
                     yearly_received_limit=row["yearly_received_limit"])


def side(facts: asyncpg.Record, prefix: str) -> dict[str, Any] | None:
    """One member of SEND_FACTS (``s_`` sender, ``r_`` recipient) under the names of
    GiftRepository.member's rows; None when missing."""
    if facts[f"{prefix}_id"] is None:
        return None
    return {"id": facts[f"{prefix}_id"], "account_id": facts[f"{prefix}_account"],
            "card_number": facts[f"{prefix}_card"], "first_name": facts[f"{prefix}_first"],
            "last_name": facts[f"{prefix}_last"], "status": facts[f"{prefix}_status"],
            "timezone": facts[f"{prefix}_timezone"]}


def party(r: asyncpg.Record, prefix: str) -> GiftParty:
    return GiftParty(member_id=r[f"{prefix}_id"], card_number=r[f"{prefix}_card"],
                     first_name=r[f"{prefix}_first"], last_name=r[f"{prefix}_last"])


def member_party(r: Mapping[str, Any]) -> GiftParty:
    return GiftParty(member_id=r["id"], card_number=r["card_number"],
                     first_name=r["first_name"], last_name=r["last_name"])


class GiftService:
    """Gifts on a session's unit of work, or on a bare asyncpg connection inside a
    transaction (``Database.raw_transaction``: the API's send, where a session's own cost
    would be a good part of the gift's)."""

    def __init__(self, session: AsyncSession | RawConnection, system: SystemAccounts) -> None:
        self.session = session
        self.ledger = Ledger(session, system)
        self._repo: GiftRepository | None = None

    async def repo(self) -> GiftRepository:
        if self._repo is None:
            self._repo = GiftRepository(await raw_connection(self.session)
                                        if isinstance(self.session, AsyncSession)
                                        else self.session)
        return self._repo

    async def terms(self, day: date | None = None) -> GiftTerms:
        row = await (await self.repo()).rule_in_force(day or utcnow().date())
        if row is None:
            return DEFAULT_TERMS
        return terms_of(row, rule_id=row["id"])

    @staticmethod
    def facts_query(sender_id: int, data: GiftCreate, now: datetime) -> Facts:
        """The gift's first query (SEND_FACTS), for a caller that runs it with the
        idempotency key's claim (``lms.api.idempotency.idempotent_facts``)."""
        return Facts(SEND_FACTS, (sender_id, data.recipient_card_number, now.date(),
                                  ADVISORY_NAMESPACE))

    async def send(self, sender_id: int, data: GiftCreate,
                   facts: asyncpg.Record | None = None, now: datetime | None = None
                   ) -> GiftOut:
        """``facts``: the row of ``facts_query`` for ``now`` if the caller ran it already."""
        repo = await self.repo()
        now = now or utcnow()
        # One statement reads both members and the terms and takes both members' gift
        # locks; a refusal below rolls the locks back with everything else.
        if facts is None:
            facts = await repo.send_facts(sender_id, data.recipient_card_number, now.date())
        sender, recipient = side(facts, "s"), side(facts, "r")
        if sender is None or sender["status"] != "active":
            raise MemberLocked()
        if recipient is None or name_key(recipient["last_name"]) != name_key(
                data.recipient_last_name):
            raise RecipientNotFound()
        if recipient["id"] == sender_id:
            raise GiftToSelf(field="recipientCardNumber")
        if recipient["status"] != "active":
            raise RecipientNotActive()
        terms = terms_of(facts)
        if data.miles < terms.min_miles:
            raise GiftTooSmall(f"At least {terms.min_miles} miles", field="miles",
                               minMiles=terms.min_miles)
        fee = terms.fee(data.miles)
        await self._check_limits(sender, recipient, data.miles, terms, now)
        sender_view, recipient_view = member_party(sender), member_party(recipient)
        legs = [Leg(sender["account_id"], Unit.MILES, -(data.miles + fee)),
                Leg(recipient["account_id"], Unit.MILES, data.miles)]
        if fee:
            await self.ledger.repo()  # loads the system accounts' ids on first use
            legs.append(Leg(self.ledger.system.pick(SystemAccount.FEES), Unit.MILES, fee))
        summary = {"miles": data.miles, "fee": fee, "message": data.message,
                   "sender": {"memberId": sender_id, "cardNumber": sender["card_number"],
                              "name": f"{sender['first_name']} {sender['last_name']}"},
                   "recipient": {"memberId": recipient["id"],
                                 "cardNumber": recipient["card_number"],
                                 "name": f"{recipient['first_name']} "
                                         f"{recipient['last_name']}"}}
        entry = await self.ledger.post(
            kind=EntryKind.GIFT, actor=Actor("member", str(sender_id)), legs=legs,
            description=f"Gift from {sender['first_name']} {sender['last_name']} "
                        f"to {recipient['first_name']} {recipient['last_name']}",
            details=summary,
            events=[("gift.sent", summary | {"memberId": sender_id}),
                    ("gift.received", summary | {"memberId": recipient["id"]})])
        gift_id = await repo.insert_gift(
            sender_id=sender_id, recipient_id=recipient["id"], miles=data.miles, fee=fee,
            message=data.message, rule_id=terms.rule_id, entry_id=entry.id, created_at=now)
        return GiftOut(id=gift_id, direction="sent", sender=sender_view,
                       recipient=recipient_view, miles=data.miles, fee=fee,
                       message=data.message, entry_id=entry.id, created_at=now)

    async def _check_limits(self, sender: Mapping[str, Any], recipient: Mapping[str, Any],
                            miles: int, terms: GiftTerms, now: datetime) -> None:
        """Under the members' gift locks: what they already sent or received counts."""
        capped = (terms.daily_received_limit is not None
                  or terms.yearly_received_limit is not None)
        counts = await (await self.repo()).counts(
            sender["id"], local_starts(now, sender["timezone"]), recipient["id"],
            local_starts(now, recipient["timezone"]))
        for used, limit, period in ((counts["sent_day"], terms.daily_limit, "daily"),
                                    (counts["sent_year"], terms.yearly_limit, "yearly")):
            if used + miles > limit:
                raise GiftLimitExceeded(
                    f"The {period} limit is {limit} miles; {max(0, limit - used)} left",
                    limit=limit, period=period, remaining=max(0, limit - used))
        if not capped:
            return
        for used, cap, period in ((counts["received_day"], terms.daily_received_limit, "daily"),
                                  (counts["received_year"], terms.yearly_received_limit,
                                   "yearly")):
            if cap is not None and used + miles > cap:
                # Not how much is left: that would tell the sender about others' gifts.
                raise GiftLimitExceeded(f"The recipient's {period} limit would be exceeded",
                                        period=period)

    async def list(self, member_id: int, *, sent: bool, before: int | None = None,
                   limit: int = 50) -> list[GiftOut]:
        rows = await (await self.repo()).list(member_id, sent=sent, before=before,
                                              limit=limit)
        return [GiftOut(id=r["id"], direction="sent" if sent else "received",
                        sender=party(r, "s"), recipient=party(r, "r"), miles=r["miles"],
                        fee=r["fee"], message=r["message"], entry_id=r["entry_id"],
                        created_at=r["created_at"]) for r in rows]

    async def my_terms(self, member_id: int) -> GiftTermsOut:
        repo = await self.repo()
        member = await repo.member(member_id)
        if member is None:
            raise MemberLocked()
        now = utcnow()
        terms = await self.terms(now.date())
        day, year = await repo.sent_since(member_id, *local_starts(now, member["timezone"]))
        return GiftTermsOut(fee_percent_bp=terms.fee_bp, fee_minimum=terms.fee_minimum,
                            min_miles=terms.min_miles, daily_limit=terms.daily_limit,
                            yearly_limit=terms.yearly_limit,
                            daily_received_limit=terms.daily_received_limit,
                            yearly_received_limit=terms.yearly_received_limit,
                            sent_today=day, sent_this_year=year)
