"""Gifting miles: one member gives miles to another, paying a fee, within daily and yearly
limits.

Terms are versions with effective dates in ``gift_rules`` (programme file section
``gift_rules``); without one in force, DEFAULT_TERMS apply. Limits count the miles given,
not the fee, per calendar day and year in the member's own time zone.

A gift is one call of the SQL function ``gift_send()`` (migration 0024), which checks and
does the whole unit of work; this module prepares its arguments and turns its refusals into
the errors of lms.gifts.errors.

Exactness under concurrency: a gift takes transaction-scoped advisory locks on the sender
and the recipient, in member id order, before it counts what they sent and received today
and this year, and keeps them until commit; the next gift of either member counts after it.
Not the member rows themselves: the flight feed locks balance rows before member rows
(lms.accrual), and a gift posts to balance rows after its count, so locking member rows
here would deadlock with a concurrent flight credit.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.db import Database, RawConnection, raw_connection
from lms.family.errors import MemberLocked
from lms.gifts.errors import (
    GiftLimitExceeded,
    GiftTooSmall,
    GiftToSelf,
    RecipientNotActive,
    RecipientNotFound,
)
from lms.gifts.repository import GiftRepository
from lms.gifts.schemas import GiftCreate, GiftOut, GiftParty, GiftTermsOut
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import (
    Ledger,
    SystemAccounts,
    add_months,
    default_config,
    ledger_error,
)
from lms.ledger.types import SystemAccount

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
    """The terms of a ``gift_rules`` row (its id as ``rule_id`` unless given), the
    defaults when there is none."""
    rule_id = row["rule_id"] if rule_id is None else rule_id
    if rule_id is None:
        return DEFAULT_TERMS
    return GiftTerms(rule_id=rule_id, fee_bp=row["fee_bp"], fee_minimum=row["fee_minimum"],
                     min_miles=row["min_miles"], daily_limit=row["daily_limit"],
                     yearly_limit=row["yearly_limit"],
                     daily_received_limit=row["daily_received_limit"],
                     yearly_received_limit=row["yearly_received_limit"])


def party(r: asyncpg.Record, prefix: str) -> GiftParty:
    return GiftParty(member_id=r[f"{prefix}_id"], card_number=r[f"{prefix}_card"],
                     first_name=r[f"{prefix}_first"], last_name=r[f"{prefix}_last"])


def gift_refusal(exc: asyncpg.PostgresError) -> Exception | None:
    """The error for a refusal of gift_send() (its SQLSTATEs GF001-GF007, then
    ledger_post()'s), or None for any other error."""
    state = getattr(exc, "sqlstate", None)
    detail = getattr(exc, "detail", None) or ""
    if state == "GF001":
        return MemberLocked()
    if state == "GF002":
        return RecipientNotFound()
    if state == "GF003":
        return GiftToSelf(field="recipientCardNumber")
    if state == "GF004":
        return RecipientNotActive()
    if state == "GF005":
        least = int(detail)
        return GiftTooSmall(f"At least {least} miles", field="miles", minMiles=least)
    if state == "GF006":
        info = json.loads(detail)
        return GiftLimitExceeded(
            f"The {info['period']} limit is {info['limit']} miles; {info['remaining']} left",
            limit=info["limit"], period=info["period"], remaining=info["remaining"])
    if state == "GF007":
        # Not how much is left: that would tell the sender about others' gifts.
        return GiftLimitExceeded(f"The recipient's {detail} limit would be exceeded",
                                 period=detail)
    problem = ledger_error(exc, None, None)
    return None if problem is exc else problem


def storable(text: str) -> str | None:
    """``text``, or None when it holds the NUL character, which no PostgreSQL text can:
    gift_send() answers for it where the old unit of work failed on it."""
    return None if "\x00" in text else text


# A gift's whole unit of work (migration 0024): claims the key, checks, posts, stores the gift
# and its answer; sent with the gifts that arrive meanwhile as one call of gift_send_batch()
# (0026, lms.group_commit). Its default terms (the eleventh argument) are the same for every
# gift: given once per batch.
GIFT_FUNCTION = "gift_send"
GIFT_SHARED_ARGUMENTS = (10,)


async def gift_arguments(db: Database, system: SystemAccounts, scope: str, key: str,
                         fingerprint: str, sender_id: int, data: GiftCreate, now: datetime
                         ) -> tuple[Any, ...]:
    """gift_send()'s arguments for ``sender_id``'s gift under the Idempotency-Key ``key`` of
    ``scope`` claimed with the request's ``fingerprint``."""
    if not system.loaded():
        await db.autocommit(lambda conn: system.load(LedgerRepository(conn)))
    return (scope, key, fingerprint, sender_id, data.recipient_card_number,
            storable(name_key(data.recipient_last_name)), data.miles, storable(data.message),
            now, msgspec.json.encode(now).decode()[1:-1],
            [DEFAULT_TERMS.fee_bp, DEFAULT_TERMS.fee_minimum, DEFAULT_TERMS.min_miles,
             DEFAULT_TERMS.daily_limit, DEFAULT_TERMS.yearly_limit,
             DEFAULT_TERMS.daily_received_limit, DEFAULT_TERMS.yearly_received_limit],
            # One fee shard per process: a batch's gifts then lock one, and two processes'
            # batches rarely the same (migration 0026).
            system.pick(SystemAccount.FEES, lane=os.getpid()),
            add_months(now, default_config().lot_validity_months))


async def send_gift(db: Database, system: SystemAccounts, scope: str, key: str,
                    fingerprint: str, sender_id: int, data: GiftCreate, now: datetime
                    ) -> asyncpg.Record:
    """The whole gift: gift_send()'s row of ``status_code``, ``response_body`` (GiftOut's
    JSON, or the stored answer of an earlier request) and ``replayed``. A refusal is raised
    as asyncpg's error; ``gift_refusal`` names it."""
    return await db.call_grouped(
        GIFT_FUNCTION, await gift_arguments(db, system, scope, key, fingerprint, sender_id,
                                            data, now),
        shared=GIFT_SHARED_ARGUMENTS)


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
