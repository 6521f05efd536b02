"""Member consent, quotes, holds, captures, voids and refunds of partner redemptions.

A partner opens a hold with the member's card number and one-time code. The code's check is
committed even when the code is wrong, so that wrong codes are counted: a quote checks it in a
statement of its own (``check_member_code``); a hold is opened by one statement that checks
the code, answers a wrong one (counted) without an error, and otherwise consumes it in the
same unit of work as the ledger hold. Every miles movement goes through the ledger with the
partner as actor; captures move the miles to the partner's clearing account, refunds bring
them back. Opening, capturing and voiding a partner's hold are each one SQL function
(migration 0025); here are the arguments only Python knows and the problems for their
refusals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.accounts.models import Member
from lms.accounts.repository import MemberRepository
from lms.clock import utcnow
from lms.db import Database, RawConnection, raw_connection
from lms.errors import LmsError, ValidationFailed
from lms.family.repository import FamilyRepository
from lms.ledger.errors import (
    CaptureExceedsHold,
    HoldExpired,
    HoldNotFound,
    HoldNotPending,
    InsufficientMiles,
)
from lms.ledger.service import Ledger, SystemAccounts, default_config, ledger_error
from lms.ledger.types import Actor, EntryKind, HoldView, Leg, Unit
from lms.partners.clearing import clearing_shard, ensure_clearing
from lms.partners.errors import CurrencyMismatch, PartnerNotFound, PartnerSuspended
from lms.partners.models import Partner
from lms.partners.repository import PartnerRepository
from lms.redemption import codes, pricing
from lms.redemption.errors import (
    CashShareTooLow,
    InvalidMemberCode,
    MemberLocked,
    NotPoolHead,
    RedemptionLocked,
    RedemptionNotFound,
    RedemptionNotOffered,
    RefundExceedsCapture,
    UnknownPartner,
)
from lms.redemption.models import PartnerHold, Redemption, RedemptionGuard, RedemptionRefund
from lms.redemption.repository import HoldWriteRepository, RedemptionRepository
from lms.redemption.schemas import (
    AwardBookingRequest,
    HoldOut,
    HoldRequest,
    HoldStatusName,
    QuoteOut,
    QuoteRequest,
    RedemptionCodeOut,
    RedemptionCodeStatus,
    RedemptionOut,
    RefundOut,
    RefundRequest,
)
from lms.settings import Settings

# The programme's own airline, through which members' award bookings are held (seeded by
# migration 0006).
INTERNAL_PARTNER = "lm-awards"

@dataclass(frozen=True, slots=True)
class CodeCheck:
    """A member code that matched, for the unit of work that consumes it."""

    code_id: int
    member_id: int
    # The pool account the code draws on (a pool head's code), else the member's own.
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    max_failures: int
    window: timedelta
    lock: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardPolicy:
        return cls(settings.redemption_max_failures,
                   timedelta(seconds=settings.redemption_failure_window_seconds),
                   timedelta(seconds=settings.redemption_lock_seconds))


@dataclass(frozen=True, slots=True)
class Guard:
    """A card's guard against guessing, as read on the raw path (RedemptionGuard's fields)."""

    failures: int
    window_started_at: datetime
    locked_until: datetime | None


def guard_state(guard: RedemptionGuard | Guard | None, policy: GuardPolicy, now: datetime
                ) -> tuple[int, datetime | None]:
    """(failures within the current window, lock end if locked now)."""
    if guard is None:
        return 0, None
    locked = guard.locked_until if guard.locked_until and guard.locked_until > now else None
    recent = guard.failures if guard.window_started_at > now - policy.window else 0
    return recent, locked


class ConsentService:
    """Members' one-time codes and the check of a code a partner presents."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.repo = RedemptionRepository(session)
        self.members = MemberRepository(session)
        self.partners = PartnerRepository(session)
        self.policy = GuardPolicy.from_settings(settings)

    async def _member(self, member_id: int) -> Member:
        member = await self.members.by_id(member_id)
        if member is None:
            raise MemberNotFound()  # pragma: no cover - a member token names a member
        return member

    async def issue(self, member_id: int, partner_code: str | None, *,
                    from_pool: bool = False) -> RedemptionCodeOut:
        """``MemberCodes.issue`` inside this session's transaction."""
        return await MemberCodes(await raw_connection(self.session), self.settings).issue(
            member_id, partner_code, from_pool=from_pool)

    async def status(self, member_id: int) -> RedemptionCodeStatus:
        member = await self._member(member_id)
        now = utcnow()
        recent, locked = guard_state(await self.repo.guard(member.card_number), self.policy,
                                     now)
        return RedemptionCodeStatus(locked=locked is not None, locked_until=locked,
                                    recent_failures=recent,
                                    active_codes=await self.repo.live_code_count(member.id,
                                                                                  now))


class MemberCodes:
    """Members' one-time codes issued, on an asyncpg connection inside a transaction: the
    member, the card's guard and the bound partner in one query, then the code. A partner's
    check of a code is member_code_check() (``check_member_code``, ``HoldOpen``)."""

    def __init__(self, conn: RawConnection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.repo = HoldWriteRepository(conn)
        self.policy = GuardPolicy.from_settings(settings)

    async def issue(self, member_id: int, partner_code: str | None, *,
                    from_pool: bool = False) -> RedemptionCodeOut:
        facts = await self.repo.issue_facts(member_id, partner_code)
        if facts is None:
            raise MemberNotFound()  # pragma: no cover - a member token names a member
        if facts["status"] != "active":
            raise MemberLocked()
        account_id = None
        if from_pool:
            membership = await FamilyRepository(self.conn).current_membership(member_id)
            if membership is None or membership["head_id"] != member_id:
                raise NotPoolHead()
            account_id = membership["account_id"]
        if partner_code is not None and facts["partner_status"] != "active":
            raise UnknownPartner(field="partnerCode")
        now = utcnow()
        guard = (None if facts["failures"] is None else
                 Guard(facts["failures"], facts["window_started_at"], facts["locked_until"]))
        _, locked = guard_state(guard, self.policy, now)
        if locked is not None:
            raise RedemptionLocked(f"Redemption is locked until {locked.isoformat()}",
                                   lockedUntil=locked.isoformat())
        code = codes.new_code()
        expires = now + timedelta(seconds=self.settings.redemption_code_ttl_seconds)
        await self.repo.add_code(
            member_id=member_id, partner_id=facts["partner_id"], account_id=account_id,
            expires_at=expires,
            code_hash=codes.code_hash(self.settings.redemption_code_secret,
                                      facts["card_number"], code))
        return RedemptionCodeOut(code=code, expires_at=expires, partner_code=partner_code)


def code_refusal(refusal: str | None, detail: str | None) -> LmsError | None:
    """The problem for member_code_check()'s refusal (None: the code is good). An unknown card
    and a wrong, expired, used or differently bound code give the same answer."""
    if refusal is None:
        return None
    if refusal == "redemption_locked":
        return RedemptionLocked(lockedUntil=detail)
    if refusal == "member_locked":
        return MemberLocked()
    return InvalidMemberCode()


async def check_member_code(db: Database, settings: Settings, partner_id: int,
                            card_number: str, code: str) -> CodeCheck:
    """Check a member code in one statement of its own (member_code_check(), migration 0025),
    committed whatever the outcome (so that a wrong code is counted), then raise the refusal
    if any."""
    policy = GuardPolicy.from_settings(settings)
    code_hash = codes.code_hash(settings.redemption_code_secret, card_number, code)
    row = await db.autocommit(lambda conn: HoldWriteRepository(conn).check_code(
        partner_id, card_number, code_hash, utcnow(), max_failures=policy.max_failures,
        window=policy.window, lock=policy.lock))
    refusal = code_refusal(row["refusal"], row["refusal_detail"])
    if refusal is not None:
        raise refusal
    return CodeCheck(code_id=row["code_id"], member_id=row["member_id"],
                     account_id=row["account_id"])


async def internal_partner(session: AsyncSession, system: SystemAccounts) -> Partner:
    """The programme's airline partner, with its clearing account opened on first use."""
    repo = PartnerRepository(session)
    partner = await repo.by_code(INTERNAL_PARTNER)
    if partner is None:
        raise PartnerNotFound(f"Partner {INTERNAL_PARTNER} is missing; run `lms db upgrade`")
    if partner.clearing_account_id is None:
        partner = await repo.by_code(INTERNAL_PARTNER, lock=True)
        assert partner is not None
        if partner.clearing_account_id is None:
            ledger = Ledger(session, system)
            account_id = await ensure_clearing(await ledger.repo(), partner.id)
            partner = await repo.set_clearing_account(partner.id, account_id)
    return partner


def hold_out(hold: HoldView, row: PartnerHold, redemption_id: int | None) -> HoldOut:
    return hold_answer(hold, row.cash_amount, row.currency, row.order_reference,
                       redemption_id)


def hold_answer(hold: HoldView, cash_amount: int, currency: str, order_reference: str,
                redemption_id: int | None) -> HoldOut:
    return HoldOut(id=hold.id, status=cast(HoldStatusName, str(hold.status)),
                   miles=hold.amount, captured_miles=hold.captured,
                   cash_amount=cash_amount, currency=currency,
                   order_reference=order_reference, expires_at=hold.expires_at,
                   created_at=hold.created_at, closed_at=hold.closed_at,
                   redemption_id=redemption_id)


class RedemptionService:
    """Award bookings, reads and refunds for one partner (the caller); quotes, partner
    holds, captures and voids are ``HoldWriteService``'s."""

    def __init__(self, session: AsyncSession, system: SystemAccounts,
                 settings: Settings) -> None:
        self.session = session
        self.system = system
        self.settings = settings
        self.repo = RedemptionRepository(session)
        self.members = MemberRepository(session)
        self.partners = PartnerRepository(session)
        self.ledger = Ledger(session, system)

    async def _partner(self, partner_id: int) -> Partner:
        partner = await self.partners.by_id(partner_id)
        if partner is None or partner.clearing_account_id is None:
            raise PartnerNotFound()
        if partner.status != "active":
            raise PartnerSuspended()
        return partner

    @staticmethod
    def _offers(partner: Partner, currency: str) -> None:
        if partner.value_per_mile_milli_minor <= 0:
            raise RedemptionNotOffered()
        if currency != partner.currency:
            raise CurrencyMismatch(f"The contract's currency is {partner.currency}",
                                   field="currency")

    async def _active_member(self, member_id: int) -> Member:
        member = await self.members.by_id(member_id)
        if member is None:
            raise InvalidMemberCode()  # pragma: no cover - codes belong to members
        if member.status != "active":
            raise MemberLocked()
        return member

    # -- holds ------------------------------------------------------------------------------

    async def book_award(self, member_id: int, data: AwardBookingRequest) -> HoldOut:
        """A member's own award booking: a hold through the internal airline partner, which
        the airline's booking system captures or voids with that partner's API key."""
        partner = await internal_partner(self.session, self.system)
        member = await self._active_member(member_id)
        return await self._open(partner, member, miles=data.miles, cash=0,
                                order_reference=data.order_reference, ttl=data.ttl_seconds,
                                code_id=None, origin="member")

    async def _open(self, partner: Partner, member: Member, *, miles: int, cash: int,
                    order_reference: str, ttl: int, code_id: int | None,
                    origin: str, account_id: int | None = None) -> HoldOut:
        hold = await self.ledger.create_hold(
            account_id or member.account_id, miles, actor=Actor("partner", str(partner.id)),
            expires_at=utcnow() + timedelta(seconds=ttl), reference=order_reference)
        row = await self.repo.add_hold(
            hold_id=hold.id, partner_id=partner.id, member_id=member.id, code_id=code_id,
            order_reference=order_reference, miles=miles, cash_amount=cash,
            currency=partner.currency,
            value_per_mile_milli_minor=partner.value_per_mile_milli_minor, origin=origin)
        return hold_out(hold, row, None)

    async def _hold(self, partner_id: int, hold_id: int) -> PartnerHold:
        row = await self.repo.hold(partner_id, hold_id)
        if row is None:
            raise HoldNotFound()
        return row

    async def get_hold(self, partner_id: int, hold_id: int) -> HoldOut:
        row = await self._hold(partner_id, hold_id)
        hold = await self.ledger.get_hold(hold_id)  # expires a due hold on read
        redemptions = await self.repo.redemption_ids_of([hold_id])
        return hold_out(hold, row, redemptions.get(hold_id))

    async def holds_by_order(self, partner_id: int, order_reference: str) -> list[HoldOut]:
        rows = await self.repo.holds_by_order(partner_id, order_reference)
        redemptions = await self.repo.redemption_ids_of([r.hold_id for r in rows])
        return [hold_out(await self.ledger.get_hold(r.hold_id), r,
                         redemptions.get(r.hold_id)) for r in rows]

    # -- redemptions and refunds ------------------------------------------------------------

    async def _redemption(self, partner_id: int, redemption_id: int, *, lock: bool = False
                          ) -> Redemption:
        redemption = await self.repo.redemption(partner_id, redemption_id, lock=lock)
        if redemption is None:
            raise RedemptionNotFound()
        return redemption

    async def get_redemption(self, partner_id: int, redemption_id: int) -> RedemptionOut:
        redemption = await self._redemption(partner_id, redemption_id)
        return redemption_out(redemption, await self.repo.refunds_of(redemption.id))

    async def redemptions_by_order(self, partner_id: int, order_reference: str
                                   ) -> list[RedemptionOut]:
        return [redemption_out(r, await self.repo.refunds_of(r.id))
                for r in await self.repo.redemptions_by_order(partner_id, order_reference)]

    async def refund(self, partner_id: int, redemption_id: int, data: RefundRequest
                     ) -> RefundOut:
        """Give back all (``miles`` absent) or part of what is left of a redemption. The
        redemption row is locked, so concurrent refunds run one after the other and never
        give back more than was captured in total. The miles come back as a new lot with
        the standard validity counted from the refund (the ledger's default)."""
        partner = await self._partner(partner_id)
        redemption = await self._redemption(partner.id, redemption_id, lock=True)
        remaining = redemption.miles - redemption.refunded_miles
        miles = remaining if data.miles is None else data.miles
        if remaining == 0 or miles > remaining:
            raise RefundExceedsCapture(
                f"{remaining} of the {redemption.miles} captured miles can be refunded",
                refundableMiles=remaining)
        member = await self.members.by_id(redemption.member_id)
        assert member is not None
        clearing = clearing_shard(await self.partners.clearing_shards(partner.id), member.id)
        # Back to the account the hold drew on (a family pool) while it is open, else to the
        # member who authorised the redemption.
        source = (await self.ledger.get_hold(redemption.hold_id)).account_id
        to_account = (source if await self.repo.account_open(source)
                      else member.account_id)
        entry = await self.ledger.post(
            kind=EntryKind.REFUND, actor=Actor("partner", str(partner.id)),
            description=data.reason or f"{partner.name}: refund of order "
                                       f"{redemption.order_reference}",
            legs=[Leg(clearing, Unit.MILES, -miles),
                  Leg(to_account, Unit.MILES, miles)],
            details={"partnerId": partner.id, "redemptionId": redemption.id,
                     "holdId": redemption.hold_id,
                     "orderReference": redemption.order_reference},
            events=[("redemption.refunded", {
                "partnerId": partner.id, "redemptionId": redemption.id,
                "memberId": member.id, "miles": miles,
                "orderReference": redemption.order_reference})])
        await self.repo.set_refunded(redemption.id, redemption.refunded_miles + miles)
        refund = await self.repo.add_refund(redemption_id=redemption.id, entry_id=entry.id,
                                            miles=miles)
        return RefundOut(id=refund.id, redemption_id=redemption.id, miles=miles,
                         created_at=refund.created_at)


class HoldWriteService:
    """A partner's quotes, on a bare asyncpg connection (``Database.autocommit``): what the
    partner and member must be is read in one statement, then the member's balances."""

    def __init__(self, conn: RawConnection, system: SystemAccounts) -> None:
        self.repo = HoldWriteRepository(conn)
        self.ledger = Ledger(conn, system)

    async def _contract(self, partner_id: int, member_id: int, currency: str
                        ) -> asyncpg.Record:
        """The partner's contract (which must offer redemption in ``currency``) and the
        member's status and account."""
        facts = await self.repo.open_facts(partner_id, member_id)
        if facts is None or facts["clearing_account_id"] is None:
            raise PartnerNotFound()
        if facts["status"] != "active":
            raise PartnerSuspended()
        if facts["value_per_mile_milli_minor"] <= 0:
            raise RedemptionNotOffered()
        if currency != facts["currency"]:
            raise CurrencyMismatch(f"The contract's currency is {facts['currency']}",
                                   field="currency")
        return facts

    async def quote(self, partner_id: int, check: CodeCheck, data: QuoteRequest) -> QuoteOut:
        facts = await self._contract(partner_id, check.member_id, data.currency)
        if facts["member_status"] is None:
            raise InvalidMemberCode()  # pragma: no cover - codes belong to members
        if facts["member_status"] != "active":
            raise MemberLocked()
        balances = {b.unit: b for b in await self.ledger.balances(
            check.account_id or facts["account_id"])}
        # A member in debt after a clawback has nothing to spend (and the partner need not
        # learn of the debt).
        available = max(0, balances[Unit.MILES].available)
        value, share = facts["value_per_mile_milli_minor"], facts["min_cash_share_bp"]
        figures = pricing.quote(data.order_amount, available, value, share)
        return QuoteOut(currency=facts["currency"], order_amount=data.order_amount,
                        miles_available=available, value_per_mile_milli_minor=value,
                        min_cash_share_bp=share, min_miles=figures.min_miles,
                        max_miles=figures.max_miles, cash_at_min_miles=figures.cash_at_min,
                        cash_at_max_miles=figures.cash_at_max)


class HoldOpen:
    """A partner's hold opened for the member whose code it presents: one statement in
    autocommit (partner_hold_open(), migration 0025), which checks the code (a wrong one is
    counted and answered without an error, so that the count is committed), then, under the
    Idempotency-Key, checks the contract and the cash share, consumes the code, reserves
    the miles and records the hold. Here: the values only Python knows (the code's hash under
    the server's secret, the clock, the settings) and the code's refusal."""

    def __init__(self, partner_id: int, data: HoldRequest, settings: Settings) -> None:
        self.partner_id = partner_id
        self.data = data
        self.settings = settings

    async def open(self, conn: RawConnection, principal: str, key: str, fingerprint: str
                   ) -> asyncpg.Record:
        """The function's row for the request under its Idempotency-Key
        (``lms.api.idempotency.idempotent_call``); the code's refusal raised, after the
        statement committed the count of a wrong code."""
        data, settings = self.data, self.settings
        policy = GuardPolicy.from_settings(settings)
        now = utcnow()
        row = await HoldWriteRepository(conn).open_hold(
            principal, key, fingerprint, partner_id=self.partner_id,
            card_number=data.card_number,
            code_hash=codes.code_hash(settings.redemption_code_secret, data.card_number,
                                      data.member_code),
            miles=data.miles, cash_amount=data.cash_amount, currency=data.currency,
            order_reference=data.order_reference,
            expires_at=now + timedelta(seconds=data.ttl_seconds), now=now,
            max_failures=policy.max_failures, window=policy.window, lock=policy.lock,
            hold_max_ttl=default_config().hold_max_ttl)
        refusal = code_refusal(row["refusal"], row["refusal_detail"])
        if refusal is not None:
            raise refusal
        return row


class HoldClose:
    """A partner's capture or void of one of its holds. Each is one statement in autocommit
    (partner_hold_capture() and partner_hold_void(), migration 0025), which holds the rules
    that need the database; their refusals are ``hold_refusal``'s problems.

    Capture: all or part of a pending hold (the rest is released) into the partner's
    clearing account, answered with the redemption. Void: the hold's miles released. An
    expired hold: 409 hold_expired; one captured or voided before: 409 hold_not_pending.
    """

    def __init__(self, partner_id: int, hold_id: int, miles: int | None = None) -> None:
        self.partner_id = partner_id
        self.hold_id = hold_id
        # Miles to capture; all that is held when None.
        self.miles = miles

    async def capture(self, conn: RawConnection, principal: str, key: str, fingerprint: str
                      ) -> asyncpg.Record:
        """The function's row (``status_code``, ``response_body``, ``replayed``) for the
        request under its Idempotency-Key (``lms.api.idempotency.idempotent_call``)."""
        return await HoldWriteRepository(conn).capture(
            principal, key, fingerprint, partner_id=self.partner_id, hold_id=self.hold_id,
            miles=self.miles)

    async def void(self, conn: RawConnection, principal: str, key: str, fingerprint: str
                   ) -> asyncpg.Record:
        return await HoldWriteRepository(conn).void(
            principal, key, fingerprint, partner_id=self.partner_id, hold_id=self.hold_id)


def hold_refusal(exc: asyncpg.PostgresError) -> Exception | None:
    """The problem for a refusal of partner_hold_open(), partner_hold_capture() or
    partner_hold_void() and for ledger_post()'s errors; None for anything else."""
    state = getattr(exc, "sqlstate", None)
    detail = getattr(exc, "detail", None) or ""
    if state == "RH001":
        return PartnerNotFound()
    if state == "RH002":
        return PartnerSuspended()
    if state == "RH003":
        return HoldNotFound()
    if state == "RH004":
        return HoldNotPending(f"The hold is {detail}")
    if state == "RH005":
        return HoldExpired()
    if state == "RH006":
        info = json.loads(detail)
        return CaptureExceedsHold(f"{info['requested']} requested, {info['held']} held")
    if state == "RH007":
        return RedemptionNotOffered()
    if state == "RH008":
        return CurrencyMismatch(f"The contract's currency is {detail}", field="currency")
    if state == "RH009":
        return CashShareTooLow(
            f"At least {int(detail) / 100:g}% of the order must be paid in cash",
            field="cashAmount")
    if state == "RH010":
        return InvalidMemberCode()
    if state == "RH011":
        return MemberLocked()
    if state == "RH012":
        return ValidationFailed(f"A hold may last at most {default_config().hold_max_ttl}",
                                field="expiresAt")
    if state == "RH013":
        info = json.loads(detail)
        return InsufficientMiles(
            f"{info['available']} miles available, {info['requested']} needed",
            available=info["available"], requested=info["requested"])
    error = ledger_error(exc, None, None)
    return error if isinstance(error, LmsError) else None


def redemption_out(r: Redemption, refunds: list[RedemptionRefund]) -> RedemptionOut:
    return RedemptionOut(
        id=r.id, hold_id=r.hold_id, order_reference=r.order_reference, miles=r.miles,
        refunded_miles=r.refunded_miles, refundable_miles=r.miles - r.refunded_miles,
        cash_amount=r.cash_amount, currency=r.currency,
        value_per_mile_milli_minor=r.value_per_mile_milli_minor,
        miles_value=pricing.miles_worth(r.miles, r.value_per_mile_milli_minor),
        created_at=r.created_at,
        refunds=[RefundOut(id=f.id, redemption_id=r.id, miles=f.miles, created_at=f.created_at)
                 for f in refunds])
