"""The ledger's operations: the only code that changes balances, lots and holds.

Every write follows one path: lock the balance rows in (account, unit) order, check the rules,
append the entry and its postings, move the balances and lots, record the domain events, all
inside the caller's transaction. The caller's boundary (``Database.transaction``) commits and
reruns the whole unit of work on a serialization failure or deadlock.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.db import RawConnection, raw_connection
from lms.errors import ValidationFailed
from lms.ledger.errors import (
    AccountClosed,
    AccountNotFound,
    AlreadyReversed,
    CaptureExceedsHold,
    DuplicateExternalReference,
    EntryNotFound,
    HoldExpired,
    HoldNotFound,
    HoldNotPending,
    InsufficientMiles,
    InvalidAmount,
    NotReversible,
    UnbalancedEntry,
)
from lms.ledger.repository import LedgerRepository
from lms.ledger.types import (
    AccountKind,
    Actor,
    BalanceView,
    EntryKind,
    HoldStatus,
    HoldView,
    Leg,
    PostedEntry,
    SystemAccount,
    Unit,
)
from lms.settings import Settings, get_settings

ALL_UNITS = (Unit.MILES, Unit.STATUS_MILES, Unit.SEGMENTS)
EXTERNAL_REF_INDEX = "uq_journal_entries_source_ref"
REVERSAL_INDEX = "uq_journal_entries_reverses_id"


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


class SystemAccounts:
    """Ids of the programme's own accounts, loaded once per process.

    A hot system account is split into shards; each posting picks one at random, so thousands
    of concurrent credits spread over several balance rows instead of queueing on one.
    """

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self._ids: dict[str, list[int]] = {}

    async def ensure(self, repo: LedgerRepository) -> None:
        for code in SystemAccount:
            for shard in range(self.shards):
                await repo.ensure_system_account(str(code), shard, ALL_UNITS)
        await self.load(repo)

    async def ensure_partner(self, repo: LedgerRepository, partner_id: int) -> int:
        """Open (or find) a partner's clearing account, code ``partner:<id>`` shard 0, and
        return its id. One shard: partners post far less often than the programme's own
        issuance, and settlement reads one account per partner."""
        code = f"partner:{partner_id}"
        await repo.ensure_system_account(code, 0, ALL_UNITS)
        account_id = await repo.system_account_id(code, 0)
        assert account_id is not None
        return account_id

    async def load(self, repo: LedgerRepository) -> None:
        ids: dict[str, list[int]] = defaultdict(list)
        for row in await repo.system_accounts():
            ids[row["code"]].append(row["id"])
        self._ids = dict(ids)

    def loaded(self) -> bool:
        return bool(self._ids)

    def pick(self, code: SystemAccount | str, *, lane: int | None = None) -> int:
        """A shard at random, or the ``lane``'s: the same one for every call that gives
        that lane."""
        shards = self._ids.get(str(code))
        if not shards:
            raise AccountNotFound(f"System account {code} does not exist; run `lms db upgrade`")
        if lane is not None:
            return shards[lane % len(shards)]
        return random.choice(shards)  # noqa: S311 - load spreading, not security

    def all(self, code: SystemAccount | str) -> list[int]:
        return list(self._ids.get(str(code), []))


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    lot_validity_months: int = 36
    hold_max_ttl: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Settings) -> LedgerConfig:
        return cls(lot_validity_months=settings.lot_validity_months,
                   hold_max_ttl=timedelta(seconds=settings.hold_max_ttl_seconds))


_default_config: tuple[Settings, LedgerConfig] | None = None


def default_config() -> LedgerConfig:
    """The process's settings as a LedgerConfig, made once per settings object rather than
    for every unit of work (each makes a Ledger)."""
    global _default_config
    settings = get_settings()
    if _default_config is None or _default_config[0] is not settings:
        _default_config = (settings, LedgerConfig.from_settings(settings))
    return _default_config[1]


class Ledger:
    """Operations on the journal within one unit of work (one ``AsyncSession``)."""

    def __init__(self, session: AsyncSession | RawConnection, system: SystemAccounts,
                 config: LedgerConfig | None = None) -> None:
        # Either a SQLAlchemy session (joined through its asyncpg connection) or an asyncpg
        # connection already inside a transaction (Database.raw_transaction, the fast path).
        self.session = session
        self.system = system
        self.config = config or default_config()
        self._repo: LedgerRepository | None = None

    async def repo(self) -> LedgerRepository:
        if self._repo is None:
            conn = (await raw_connection(self.session)
                    if isinstance(self.session, AsyncSession) else self.session)
            self._repo = LedgerRepository(conn)
            if not self.system.loaded():
                await self.system.load(self._repo)
        return self._repo

    # -- accounts ------------------------------------------------------------------------

    async def open_account(self, kind: AccountKind) -> int:
        if kind is AccountKind.SYSTEM:
            raise ValueError("system accounts are created by SystemAccounts.ensure")
        return await (await self.repo()).insert_account(str(kind), ALL_UNITS)

    async def set_account_status(self, account_id: int, status: str) -> None:
        if not await (await self.repo()).set_account_status(account_id, status):
            raise AccountNotFound()

    async def balances(self, account_id: int) -> list[BalanceView]:
        rows = await (await self.repo()).balances(account_id)
        if not rows:
            raise AccountNotFound()
        return [BalanceView(r["account_id"], Unit(r["unit"]), r["posted"], r["held"])
                for r in rows]

    async def open_lots(self, account_id: int, limit: int = 10) -> list[asyncpg.Record]:
        return await (await self.repo()).open_lots(account_id, limit)

    async def expiring_between_now_and(self, account_id: int, until: datetime) -> int:
        return await (await self.repo()).expiring_sum(account_id, until)

    # -- the one write path ----------------------------------------------------------------

    async def post(
        self,
        *,
        kind: EntryKind,
        legs: Sequence[Leg],
        actor: Actor,
        description: str = "",
        source: str | None = None,
        external_ref: str | None = None,
        effective_at: datetime | None = None,
        lot_expires_at: datetime | None = None,
        reverses_id: int | None = None,
        hold: HoldView | None = None,
        details: dict[str, Any] | None = None,
        events: Iterable[tuple[str, dict[str, Any]]] = (),
        debt_account: int | None = None,
    ) -> PostedEntry:
        """Append one balanced entry. Raises ``InsufficientMiles`` if a leg would lower a
        member or pool account's available balance below zero, ``DuplicateExternalReference``
        if (source, external_ref) was applied before. ``hold`` releases that hold's
        reservation in the same entry (a capture). ``debt_account`` is a clawback's member
        account: the one account this entry may take into debt (marked ``clawback`` in the
        entry's details, which is how ``lms ledger verify`` tells debt from a bug)."""
        validate_legs(legs)
        if external_ref is not None and not source:
            raise ValidationFailed("An external reference needs its source")
        repo = await self.repo()
        if debt_account is not None:
            details = {**(details or {}), "clawback": True}
        header = (str(kind), actor.type, actor.id, description, source, external_ref,
                  reverses_id, hold.id if hold else None, effective_at,
                  json.dumps(details) if details else None)
        expires = lot_expires_at or add_months(effective_at or utcnow(),
                                               self.config.lot_validity_months)
        try:
            row = await repo.post_entry(
                header=header, accounts=[leg.account_id for leg in legs],
                units=[str(leg.unit) for leg in legs], amounts=[leg.amount for leg in legs],
                release=(hold.account_id, hold.amount) if hold else None,
                lot_expires_at=expires,
                events=[(topic, json.dumps(payload)) for topic, payload in events],
                debt_account=debt_account)
        except asyncpg.PostgresError as exc:
            raise ledger_error(exc, source, external_ref) from exc
        return PostedEntry(id=row["entry_id"], created_at=row["created_at"], balances={
            (a, Unit(u)): p for a, u, p in zip(row["accounts"], row["units"], row["posted"],
                                               strict=True)})

    # -- batches of credits (flown coupons) ------------------------------------------------

    async def lock_for_credits(self, account_ids: Sequence[int]) -> None:
        """Lock these accounts' balance rows in ledger order, ahead of ``post_credits`` (which
        locks the rows it writes anyway): for a batch that must lock something ordered after
        balance rows (a promotion's budget) before it posts."""
        await (await self.repo()).lock_balances_for_credits(account_ids)

    async def post_credits(self, rows: Sequence[tuple[Any, ...]], *, issuance: int,
                           qualification: int, actor: Actor, source: str) -> list[int]:
        """One credit entry per row from the given system shards: the balance rows take the
        batch's totals (CREDIT_BATCH_BALANCES), then the entries are written in one
        statement (POST_CREDITS). Rows: (external_ref, account_id, miles, status_miles,
        segments, effective_at, description, details JSON, lot_expires_at[,
        miles_account_id]), times as datetimes or ISO text; returns the entry ids. The
        optional tenth value credits the row's MILES to that account (a family pool).
        ``AccountClosed`` if an account is not open, ``AccountNotFound`` if one has no
        balance row for a unit it is credited in: either way the caller's transaction has
        written the batch's balances and must roll back."""
        repo = await self.repo()
        totals = credit_totals(rows, issuance, qualification)
        try:
            await repo.batch_plan()
            accounts, units, posted, closed = await repo.credit_batch_balances(totals)
            if closed:
                raise AccountClosed(f"accounts {sorted(closed)} are not open")
            before = {(a, u): p - totals[(a, u)]
                      for a, u, p in zip(accounts, units, posted, strict=True)}
            if len(before) != len(totals):
                missing = sorted(k for k in totals if k not in before)
                raise AccountNotFound(f"no balance rows {missing}")
            ids = await repo.post_credits(
                rows, balances_after(rows, before, issuance, qualification),
                issuance=issuance, qualification=qualification, actor_type=actor.type,
                actor_id=actor.id, source=source)
            # Only on success: after an error the transaction (or its savepoint) rolls back,
            # and the SET LOCALs with it; a RESET there would only hide the error.
            await repo.end_batch_plan()
        except asyncpg.PostgresError as exc:
            raise ledger_error(exc, source, None) from exc
        return ids

    # -- common shapes of entries ------------------------------------------------------------

    async def credit(self, account_id: int, amount: int, *, kind: EntryKind, actor: Actor,
                     from_system: SystemAccount = SystemAccount.ISSUANCE,
                     unit: Unit = Unit.MILES, **kwargs: Any) -> PostedEntry:
        require_positive(amount)
        return await self.post(kind=kind, actor=actor, legs=[
            Leg(self.system.pick(from_system), unit, -amount),
            Leg(account_id, unit, amount)], **kwargs)

    async def debit(self, account_id: int, amount: int, *, kind: EntryKind, actor: Actor,
                    to_system: SystemAccount = SystemAccount.REDEMPTIONS,
                    unit: Unit = Unit.MILES, **kwargs: Any) -> PostedEntry:
        require_positive(amount)
        return await self.post(kind=kind, actor=actor, legs=[
            Leg(account_id, unit, -amount),
            Leg(self.system.pick(to_system), unit, amount)], **kwargs)

    async def transfer(self, from_account: int, to_account: int, amount: int, *,
                       kind: EntryKind = EntryKind.TRANSFER, actor: Actor,
                       unit: Unit = Unit.MILES, **kwargs: Any) -> PostedEntry:
        require_positive(amount)
        if from_account == to_account:
            raise InvalidAmount("Cannot transfer to the same account")
        return await self.post(kind=kind, actor=actor, legs=[
            Leg(from_account, unit, -amount), Leg(to_account, unit, amount)], **kwargs)

    # -- reversals ---------------------------------------------------------------------------

    async def reverse(self, entry_id: int, *, actor: Actor, reason: str,
                      lot_expires_at: datetime | None = None,
                      clawback: bool = False) -> PostedEntry:
        """A new entry with every posting negated. An entry is reversed at most once and a
        reversal is not itself reversible (post a new entry instead). A ``clawback`` takes
        back a credit even if the member has spent it: the shortfall becomes debt on the
        member account the entry credited."""
        repo = await self.repo()
        rows = await repo.entry_postings(entry_id)
        if not rows:
            raise EntryNotFound()
        if rows[0]["reverses_id"] is not None:
            raise NotReversible("A reversal cannot be reversed")
        if await repo.is_reversed(entry_id):
            raise AlreadyReversed()
        legs = [Leg(r["account_id"], Unit(r["unit"]), -r["amount"]) for r in rows]
        # The one member or pool account the reversed entry credited with miles.
        debtors = [r["account_id"] for r in rows if r["unit"] == Unit.MILES
                   and r["amount"] > 0 and r["account_kind"] != AccountKind.SYSTEM]
        debtor = debtors[0] if clawback and len(debtors) == 1 else None
        return await self.post(kind=EntryKind.REVERSAL, legs=legs, actor=actor,
                               description=reason, reverses_id=entry_id,
                               lot_expires_at=lot_expires_at,
                               details={"reversedKind": rows[0]["kind"]},
                               debt_account=debtor)

    async def entry_for(self, source: str, external_ref: str) -> int | None:
        """The entry that applied ``external_ref`` from ``source``, if any."""
        return await (await self.repo()).entry_by_reference(source, external_ref)

    # -- holds -------------------------------------------------------------------------------

    async def create_hold(self, account_id: int, amount: int, *, actor: Actor,
                          expires_at: datetime, reference: str | None = None) -> HoldView:
        """Reserve miles until ``expires_at`` (at most ``hold_max_ttl`` from now; a time in
        the past makes a hold that the next read or expiry run releases)."""
        require_positive(amount)
        if expires_at - utcnow() > self.config.hold_max_ttl:
            raise ValidationFailed(f"A hold may last at most {self.config.hold_max_ttl}",
                                   field="expiresAt")
        repo = await self.repo()
        hold = await repo.create_hold(account_id=account_id, amount=amount, unit=Unit.MILES,
                                      actor_type=actor.type, actor_id=actor.id,
                                      reference=reference, expires_at=expires_at)
        if hold is None:
            balances = {b.unit: b for b in await self.balances(account_id)}
            available = balances[Unit.MILES].available
            raise InsufficientMiles(f"{available} miles available, {amount} needed",
                                    available=available, requested=amount)
        await repo.add_events([("hold.created", json.dumps({
            "holdId": hold.id, "accountId": account_id, "amount": amount,
            "expiresAt": hold.expires_at.isoformat()}))])
        return hold

    async def get_hold(self, hold_id: int) -> HoldView:
        """A hold as it is now; a pending hold past its expiry is expired on read."""
        repo = await self.repo()
        hold = await repo.get_hold(hold_id)
        if hold is None:
            raise HoldNotFound()
        if hold.status is HoldStatus.PENDING and hold.expires_at <= utcnow():
            locked = await repo.lock_hold(hold_id)
            assert locked is not None
            hold, now = locked
            if hold.status is HoldStatus.PENDING and hold.expires_at <= now:
                return await self._expire(hold)
        return hold

    async def _lock_pending(self, hold_id: int) -> HoldView:
        """Lock a hold that must still be pending and not yet due."""
        locked = await (await self.repo()).lock_hold(hold_id)
        if locked is None:
            raise HoldNotFound()
        hold, now = locked
        if hold.status is not HoldStatus.PENDING:
            raise HoldNotPending(f"The hold is {hold.status}")
        if hold.expires_at <= now:
            # Left for the expiry job (or the next read) to release: this unit of work is
            # about to roll back with the error.
            raise HoldExpired()
        return hold

    async def _expire(self, hold: HoldView) -> HoldView:
        repo = await self.repo()
        await repo.lock_balance_rows([(hold.account_id, str(Unit.MILES))])
        await repo.release_held([(hold.account_id, str(Unit.MILES), hold.amount)])
        expired = await repo.close_hold(hold.id, HoldStatus.EXPIRED, 0, None)
        await repo.add_events([("hold.expired", json.dumps(hold_event(expired)))])
        return expired

    async def capture(self, hold_id: int, amount: int | None = None, *, actor: Actor,
                      to_system: SystemAccount | int = SystemAccount.REDEMPTIONS,
                      description: str = "", details: dict[str, Any] | None = None
                      ) -> tuple[HoldView, PostedEntry]:
        """Capture all (``amount`` None) or part of a pending hold; the rest is released."""
        hold = await self._lock_pending(hold_id)
        take = hold.amount if amount is None else amount
        require_positive(take)
        if take > hold.amount:
            raise CaptureExceedsHold(f"{take} requested, {hold.amount} held")
        counter = to_system if isinstance(to_system, int) else self.system.pick(to_system)
        entry = await self.post(
            kind=EntryKind.CAPTURE, actor=actor, description=description, hold=hold,
            details=details, legs=[Leg(hold.account_id, Unit.MILES, -take),
                                   Leg(counter, Unit.MILES, take)])
        captured = await (await self.repo()).close_hold(hold.id, HoldStatus.CAPTURED, take,
                                                        entry.id)
        await (await self.repo()).add_events([("redemption.captured", json.dumps(
            hold_event(captured)))])
        return captured, entry

    async def void(self, hold_id: int, *, actor: Actor) -> HoldView:
        hold = await self._lock_pending(hold_id)
        repo = await self.repo()
        await repo.lock_balance_rows([(hold.account_id, str(Unit.MILES))])
        await repo.release_held([(hold.account_id, str(Unit.MILES), hold.amount)])
        voided = await repo.close_hold(hold.id, HoldStatus.VOIDED, 0, None)
        await repo.add_events([("hold.voided", json.dumps(
            hold_event(voided) | {"actor": actor.type}))])
        return voided

    async def expire_holds(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """Expire up to ``limit`` due holds in one set-based pass; returns how many."""
        repo = await self.repo()
        rows = await repo.claim_expired_holds(now or utcnow(), limit)
        if not rows:
            return 0
        per_account: dict[tuple[int, str], int] = defaultdict(int)
        for r in rows:
            per_account[(r["account_id"], r["unit"])] += r["amount"]
        keys = sorted(per_account)
        await repo.lock_balance_rows(keys)
        await repo.release_held([(k[0], k[1], per_account[k]) for k in keys])
        await repo.add_events([("hold.expired", json.dumps(hold_event(
            HoldView(id=r["id"], account_id=r["account_id"], amount=r["amount"],
                     captured=0, status=HoldStatus.EXPIRED, expires_at=r["expires_at"],
                     created_at=r["created_at"], closed_at=r["closed_at"],
                     reference=r["reference"], entry_id=None)))) for r in rows])
        return len(rows)

    # -- lot expiry --------------------------------------------------------------------------

    async def expire_lots(self, account_id: int, *, now: datetime | None = None
                          ) -> PostedEntry | None:
        """Move what is left of this account's due lots to breakage, sparing held miles:
        miles already promised to a partner are not taken from under the hold."""
        now = now or utcnow()
        repo = await self.repo()
        breakage = self.system.pick(SystemAccount.BREAKAGE)
        # Lock both rows now, in the same order ledger_post() will: locking the member first
        # would deadlock against a concurrent credit from this breakage shard.
        locked = {r["account_id"]: r for r in await repo.lock_balances(
            [(account_id, Unit.MILES), (breakage, Unit.MILES)])}
        if account_id not in locked:
            raise AccountNotFound()
        available = locked[account_id]["posted"] - locked[account_id]["held"]
        due = min(await repo.due_lots(account_id, now), available)
        if due <= 0:
            return None
        return await self.post(
            kind=EntryKind.EXPIRY, actor=Actor.system("expiry"),
            description="Miles expired", effective_at=now,
            legs=[Leg(account_id, Unit.MILES, -due), Leg(breakage, Unit.MILES, due)],
            events=[("miles.expired", {"accountId": account_id, "amount": due})])

    async def accounts_with_due_lots(self, *, now: datetime | None = None,
                                     limit: int = 1000) -> list[int]:
        return await (await self.repo()).accounts_with_due_lots(now or utcnow(), limit)


def credit_totals(rows: Sequence[tuple[Any, ...]], issuance: int, qualification: int
                  ) -> dict[tuple[int, str], int]:
    """A batch of credits' sum per (account, unit) (rows as ``Ledger.post_credits`` takes
    them): what the balance rows take, known before any of them is read."""
    miles, status, segments = str(Unit.MILES), str(Unit.STATUS_MILES), str(Unit.SEGMENTS)
    totals: dict[tuple[int, str], int] = {}
    get = totals.get
    issued = qualified = counted = 0
    legs = [False, False, False]  # whether any row has a leg in miles, status miles, segments
    for row in rows:
        account, credited, status_miles, segment_count = row[1], row[2], row[3], row[4]
        if credited:
            key = (row[9] if len(row) > 9 and row[9] is not None else account, miles)
            totals[key] = get(key, 0) + credited
            issued += credited
            legs[0] = True
        if status_miles:
            key = (account, status)
            totals[key] = get(key, 0) + status_miles
            qualified += status_miles
            legs[1] = True
        if segment_count:
            key = (account, segments)
            totals[key] = get(key, 0) + segment_count
            counted += segment_count
            legs[2] = True
    # The system side of every leg, even where the batch's sum comes to zero.
    for used, key, amount in ((legs[0], (issuance, miles), issued),
                              (legs[1], (qualification, status), qualified),
                              (legs[2], (qualification, segments), counted)):
        if used:
            totals[key] = get(key, 0) - amount
    return totals


def balances_after(rows: Sequence[tuple[Any, ...]], before: dict[tuple[int, str], int],
                   issuance: int, qualification: int) -> list[tuple[int, ...]]:
    """Per row of a batch of credits, the balance after each of its six legs in
    POST_CREDITS' order and the amount of its lot (0: none), along the batch's order from
    the balances ``before`` it."""
    running = dict(before)
    afters: list[tuple[int, ...]] = []
    miles, status, segments = str(Unit.MILES), str(Unit.STATUS_MILES), str(Unit.SEGMENTS)
    issued, qualified = (issuance, miles), (qualification, status)
    counted = (qualification, segments)
    # The hot loop of a bulk import: six legs a coupon, written out.
    for row in rows:
        account, credited, status_miles, segment_count = row[1], row[2], row[3], row[4]
        a1 = a2 = a3 = a4 = a5 = a6 = lot = 0  # a zero leg is left out: stays 0
        if credited:
            a1 = running[issued] = running[issued] - credited
            key = (row[9] if len(row) > 9 and row[9] is not None else account, miles)
            a2 = running[key] = running[key] + credited
            if credited > 0:  # a credit first repays any debt; the rest opens a lot
                lot = max(a2, 0) - max(a2 - credited, 0)
        if status_miles:
            a3 = running[qualified] = running[qualified] - status_miles
            key = (account, status)
            a4 = running[key] = running[key] + status_miles
        if segment_count:
            a5 = running[counted] = running[counted] - segment_count
            key = (account, segments)
            a6 = running[key] = running[key] + segment_count
        afters.append((a1, a2, a3, a4, a5, a6, lot))
    return afters


def ledger_error(exc: asyncpg.PostgresError, source: str | None,
                 external_ref: str | None) -> Exception:
    """The ledger exception for an error raised by ledger_post(), or ``exc`` itself."""
    state = getattr(exc, "sqlstate", None)
    detail = getattr(exc, "detail", None) or ""
    if state == "LD001":
        info = json.loads(detail)
        return InsufficientMiles(
            f"Account {info['accountId']} has {info['available']} {info['unit']} available, "
            f"{info['requested']} needed",
            available=info["available"], requested=info["requested"])
    if state == "LD002":
        return AccountNotFound(f"No such account among {detail}")
    if state == "LD003":
        return AccountClosed(f"Account {detail} is not open")
    if state == "LD004":
        return AlreadyReversed()
    if state == "LD005":
        return DuplicateExternalReference(f"{source}:{external_ref} was already applied")
    if isinstance(exc, asyncpg.UniqueViolationError):
        if exc.constraint_name == EXTERNAL_REF_INDEX:
            return DuplicateExternalReference(f"{source}:{external_ref} was already applied")
        if exc.constraint_name == REVERSAL_INDEX:
            return AlreadyReversed()
    return exc


def hold_event(hold: HoldView) -> dict[str, Any]:
    return {"holdId": hold.id, "accountId": hold.account_id, "amount": hold.amount,
            "captured": hold.captured, "status": str(hold.status),
            "reference": hold.reference}


def require_positive(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(f"Amount must be a positive whole number, got {amount!r}")


def validate_legs(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise UnbalancedEntry("An entry needs at least two postings")
    totals: dict[Unit, int] = defaultdict(int)
    for leg in legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int) or leg.amount == 0:
            raise InvalidAmount(f"Posting amounts must be non-zero integers, got {leg.amount!r}")
        totals[leg.unit] += leg.amount
    unbalanced = {str(u): t for u, t in totals.items() if t != 0}
    if unbalanced:
        raise UnbalancedEntry(f"Postings do not sum to zero: {unbalanced}")

