"""Partner operations: contracts and earn rates, API keys (issue, rotate, revoke, and the
check of every partner request), and partner accruals with their reversals.

Units (see lms.partners.models): money per mile in thousandths of a minor unit, earn rates in
basis points of a mile per whole currency unit. Miles earned are rounded down.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.accounts.repository import MemberRepository
from lms.auth.principal import Principal, Role
from lms.clock import utcnow
from lms.db import RawConnection
from lms.errors import LmsError
from lms.ledger.errors import DuplicateExternalReference
from lms.ledger.service import (
    Ledger,
    SystemAccounts,
    add_months,
    default_config,
    ledger_error,
)
from lms.ledger.types import Actor, EntryKind, Leg, Unit
from lms.partners import keys
from lms.partners.clearing import clearing_shard, ensure_clearing
from lms.partners.errors import (
    AccrualNotFound,
    ApiKeyNotFound,
    CurrencyMismatch,
    DuplicatePartnerTransaction,
    EarnRateOverlap,
    InvalidEarnRate,
    InvalidIpAllowList,
    InvalidOccurredAt,
    IpNotAllowed,
    NoEarnRate,
    PartnerExists,
    PartnerNotFound,
    PartnerSuspended,
    RateLimited,
    ReversalExceedsAccrual,
)
from lms.partners.models import ApiKey, Partner, PartnerAccrual, PartnerEarnRate
from lms.partners.repository import (
    ACCRUE_FUNCTION,
    KeyRepository,
    PartnerRepository,
)
from lms.partners.schemas import (
    AccrualOut,
    AccrualRequest,
    ApiKeyCreate,
    EarnRateSet,
    PartnerCreate,
    ReversalOut,
    ReversalRequest,
)

SCOPES = frozenset({"accrue", "redeem", "statements", "flights"})
RATE_WINDOW = timedelta(minutes=1)
# How far back a purchase may be credited: a lot's validity runs from the purchase, so a much
# older purchase would credit miles that are already (nearly) expired.
MAX_ACCRUAL_AGE = timedelta(days=365)
CLOCK_SKEW = timedelta(minutes=5)
# ISO 4217 currencies whose minor unit is not 1/100 of the major unit.
MINOR_UNIT_EXPONENT = {"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
                       "CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "PYG": 0, "UGX": 0, "VND": 0,
                       "XAF": 0, "XOF": 0}



def minor_per_unit(currency: str) -> int:
    """Minor units per whole currency unit. A purchase earns amount x rate // (this x
    10,000) miles, rounded down so that a partner is never billed for a fraction of a mile
    the member did not get: partner_accrue() (migration 0023) computes them."""
    return int(10 ** MINOR_UNIT_EXPONENT.get(currency, 2))


def check_networks(networks: list[str] | None) -> list[str] | None:
    if networks is None:
        return None
    try:
        return [str(ipaddress.ip_network(n.strip(), strict=False)) for n in networks]
    except ValueError as exc:
        raise InvalidIpAllowList(str(exc)) from exc


@lru_cache(maxsize=4096)
def ip_address_or_none(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address, parsed once per address seen (every partner request needs it
    for its key's allow list)."""
    if host is None:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_allowed(host: str | None, networks: list[str]) -> bool:
    address = ip_address_or_none(host)
    if address is None:
        return False
    return any(address in ipaddress.ip_network(n) for n in networks)


def key_facts(key: ApiKey) -> dict[str, object]:
    """What the audit log keeps of a key: never the key or its hash."""
    return {"keyId": key.id, "prefix": key.prefix, "scopes": list(key.scopes),
            "ipAllowList": key.ip_allow_list, "expiresAt": key.expires_at,
            "rateLimitPerMinute": key.rate_limit_per_minute, "revokedAt": key.revoked_at}


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str  # shown once
    api_key: ApiKey
    partner_code: str


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The outcome of checking a request's API key. A refusal (IP, rate limit) is an answer,
    not an exception, so that the request counter is committed before it is raised."""

    principal: Principal | None = None
    refusal: LmsError | None = None
    # A passed check's key row, and the request numbers it reserved beyond this request's
    # own in ``window``, for lms.partners.key_gate to hand out (empty unless asked for).
    key: asyncpg.Record | None = None
    spare: range = range(0)
    window: datetime | None = None

    def result(self) -> Principal | None:
        if self.refusal is not None:
            raise self.refusal
        return self.principal


class PartnerService:
    """Contracts, earn rates and API keys (admin operations). Every change is in the audit
    log under ``actor`` (the admin; None for an operator at the ``lms`` command): contracts
    and rates decide what partners are billed, keys who may credit miles."""

    def __init__(self, session: AsyncSession, system: SystemAccounts,
                 actor: Principal | None = None) -> None:
        self.session = session
        self.repo = PartnerRepository(session)
        self.ledger = Ledger(session, system)
        self.system = system
        self.actor = actor

    async def _audit(self, action: str, target_type: str, target_id: object,
                     after: dict[str, object]) -> None:
        actor = self.actor
        await self.repo.audit(
            actor_type=actor.type if actor else "operator",
            actor_id=str(actor.id) if actor else None,
            actor_role=str(actor.role) if actor else None, action=action,
            target_type=target_type, target_id=str(target_id),
            after=json.loads(json.dumps(after, default=str)))

    async def create(self, data: PartnerCreate) -> Partner:
        partner = await self.repo.add_partner(
            code=data.code, name=data.name, kind=data.kind, currency=data.currency,
            price_per_mile_milli_minor=data.price_per_mile_milli_minor,
            value_per_mile_milli_minor=data.value_per_mile_milli_minor,
            min_cash_share_bp=data.min_cash_share_bp, webhook_url=data.webhook_url)
        if partner is None:
            raise PartnerExists()
        account_id = await ensure_clearing(await self.ledger.repo(), partner.id)
        partner = await self.repo.set_clearing_account(partner.id, account_id)
        await self._audit("partner.created", "partner", partner.code, {
            "id": partner.id, "name": partner.name, "kind": partner.kind,
            "currency": partner.currency,
            "pricePerMileMilliMinor": partner.price_per_mile_milli_minor,
            "valuePerMileMilliMinor": partner.value_per_mile_milli_minor,
            "minCashShareBp": partner.min_cash_share_bp, "clearingAccountId": account_id})
        return partner

    async def get(self, code: str, *, lock: bool = False) -> Partner:
        partner = await self.repo.by_code(code, lock=lock)
        if partner is None:
            raise PartnerNotFound()
        return partner

    async def all(self) -> list[Partner]:
        return await self.repo.all()

    async def set_webhook_url(self, code: str, url: str | None) -> Partner:
        partner = await self.get(code, lock=True)
        before = partner.webhook_url
        partner = await self.repo.set_webhook_url(partner.id, url)
        await self._audit("partner.webhook_url_set", "partner", partner.code,
                          {"before": before, "webhookUrl": url})
        return partner

    async def audit(self, action: str, code: str, after: dict[str, object]) -> None:
        """An admin action on a partner taken by another package (e.g. webhook secrets)."""
        await self._audit(action, "partner", code, after)

    async def earn_rates(self, partner_id: int) -> list[PartnerEarnRate]:
        return await self.repo.earn_rates(partner_id)

    async def set_earn_rate(self, code: str, data: EarnRateSet) -> PartnerEarnRate:
        """Add a rate for a period. A new open-ended rate closes the open-ended one before it
        where it starts; any other overlap is refused. Past credits keep their miles."""
        start, end = data.effective_from, data.effective_to
        if start.tzinfo is None or (end is not None and end.tzinfo is None):
            raise InvalidEarnRate("Times need a UTC offset", field="effectiveFrom")
        if end is not None and end <= start:
            raise InvalidEarnRate("effectiveTo must be after effectiveFrom", field="effectiveTo")
        # Locked so that two rate changes for a partner cannot both pass the overlap check.
        partner = await self.get(code, lock=True)
        existing = await self.repo.earn_rates(partner.id, data.category)
        for rate in existing:
            # An open-ended new rate supersedes the open-ended one from ``start`` on. A rate
            # for a bounded period does not: cutting the old one would leave no rate after it.
            if end is None and rate.effective_to is None and rate.effective_from < start:
                await self.repo.end_earn_rate(rate.id, start)
                rate.effective_to = start
        for rate in existing:
            overlaps = ((rate.effective_to is None or rate.effective_to > start)
                        and (end is None or rate.effective_from < end))
            if overlaps:
                raise EarnRateOverlap(
                    f"Rate {rate.id} is in force from {rate.effective_from.isoformat()}")
        added = await self.repo.add_earn_rate(
            partner_id=partner.id, category=data.category,
            miles_per_unit_bp=data.miles_per_unit_bp, effective_from=start,
            effective_to=end)
        await self._audit("partner.earn_rate_added", "partner", partner.code, {
            "rateId": added.id, "category": added.category,
            "milesPerUnitBp": added.miles_per_unit_bp, "effectiveFrom": start,
            "effectiveTo": end})
        return added

    async def issue_key(self, code: str, data: ApiKeyCreate) -> IssuedKey:
        partner = await self.get(code)
        issued = await self._issue(partner, scopes=list(dict.fromkeys(data.scopes)),
                                   networks=check_networks(data.ip_allow_list),
                                   expires_at=data.expires_at,
                                   rate_limit=data.rate_limit_per_minute)
        await self._audit("api_key.issued", "partner", partner.code, key_facts(issued.api_key))
        return issued

    async def _issue(self, partner: Partner, *, scopes: list[str],
                     networks: list[str] | None, expires_at: datetime | None,
                     rate_limit: int) -> IssuedKey:
        material = keys.new_key()
        row = await self.repo.add_key(
            partner_id=partner.id, prefix=material.prefix, key_hash=material.key_hash,
            scopes=scopes, ip_allow_list=networks, expires_at=expires_at,
            rate_limit_per_minute=rate_limit)
        return IssuedKey(material.key, row, partner.code)

    async def rotate_key(self, code: str, overlap: timedelta) -> IssuedKey:
        """A new key like the newest live one; the live keys stop working after ``overlap``
        (never later than they would have anyway)."""
        partner = await self.get(code, lock=True)
        now = utcnow()
        live = await self.repo.live_keys_of(partner.id, now)
        if not live:
            raise ApiKeyNotFound("The partner has no live key to rotate; create one")
        newest = live[-1]
        issued = await self._issue(partner, scopes=list(newest.scopes),
                                   networks=newest.ip_allow_list, expires_at=None,
                                   rate_limit=newest.rate_limit_per_minute)
        await self.repo.expire_keys([k.id for k in live], now + overlap)
        await self._audit("api_key.rotated", "partner", partner.code,
                          key_facts(issued.api_key) | {
                              "replaced": [k.prefix for k in live],
                              "replacedUntil": now + overlap})
        return issued

    async def revoke_key(self, prefix: str) -> tuple[ApiKey, str]:
        key = await self.repo.revoke_key(prefix, utcnow())
        if key is None:
            raise ApiKeyNotFound()
        partner = await self.repo.by_id(key.partner_id)
        assert partner is not None
        await self._audit("api_key.revoked", "partner", partner.code, key_facts(key))
        return key, partner.code

    async def keys(self, code: str) -> list[ApiKey]:
        return await self.repo.keys_of((await self.get(code)).id)


class ApiKeyService:
    """Checks the API key of a partner request: the key, its partner, address, rate."""

    def __init__(self, conn: RawConnection) -> None:
        self.repo = KeyRepository(conn)

    async def authenticate(self, token: str, client_host: str | None,
                           now: datetime | None = None, reserve_at_most: int = 1) -> KeyCheck:
        """A partner principal, nothing (unknown, revoked, expired key: the guard answers
        401 without saying which), or a refusal (403 ip_not_allowed, 429 rate_limited).

        The rate limit is a fixed one-minute window per key, counted in PostgreSQL by one
        UPSERT, so it holds across every API process; at the edge of two windows a client
        can send up to twice its limit within a minute. ``reserve_at_most`` > 1 reserves the
        key's next request numbers with this one (lms.partners.key_gate): a passed check's
        ``spare``.
        """
        now = now or utcnow()
        prefix = keys.key_prefix(token)
        if prefix is None:
            return KeyCheck()
        window = now.replace(second=0, microsecond=0)
        key = await self.repo.check(prefix, keys.key_hash(token), window, now,
                                    ip_address_or_none(client_host), reserve_at_most)
        if key is None:
            return KeyCheck()
        if (not keys.matches(token, key["key_hash"]) or key["status"] != "active"
                or key["revoked_at"] is not None
                or (key["expires_at"] is not None and key["expires_at"] <= now)):
            return KeyCheck()
        if key["partner_status"] != "active":
            return KeyCheck(refusal=PartnerSuspended())
        if key["ip_allow_list"] and not address_allowed(client_host, key["ip_allow_list"]):
            return KeyCheck(refusal=IpNotAllowed())
        last, reserved = key["count"], key["reserve"]
        if last is None:  # pragma: no cover - the statement's rules are these rules
            last, reserved = await self.repo.count_request(key["id"], window), 1
        number = last - reserved + 1  # this request's
        limit = key["rate_limit_per_minute"]
        if number > limit:
            retry_after = int((window + RATE_WINDOW - now).total_seconds()) + 1
            return KeyCheck(refusal=RateLimited(retry_after=retry_after, limit=limit))
        return KeyCheck(Principal("partner", key["partner_id"], Role.PARTNER,
                                  scopes=frozenset(key["scopes"]), key_id=key["id"]),
                        key=key, spare=range(number + 1, min(last, limit) + 1),
                        window=key["counted_window"] or window)


class AccrualService:
    """Miles for a partner purchase, the partner API's hottest write: its whole unit of work
    is partner_accrue() (migration 0023), one statement in autocommit, which holds the rules
    that need the database. Here: the arguments only Python knows cheaply, and the problems
    for the function's refusals.

    A purchase is credited once, ever: its transaction id is unique per partner, in the
    journal (as external reference) and in partner_accruals (for an accrual of no miles,
    which has no entry). A duplicate caught by either is ``duplicate_partner_transaction``.
    """

    def __init__(self, partner_id: int, data: AccrualRequest) -> None:
        self.partner_id = partner_id
        self.data = data

    function = ACCRUE_FUNCTION

    async def arguments(self, principal: str, key: str, fingerprint: str) -> tuple[Any, ...]:
        """partner_accrue()'s arguments for the request under its Idempotency-Key
        (``lms.api.idempotency.idempotent_grouped``)."""
        data = self.data
        occurred = data.occurred_at
        # Without an offset the time is refused, after the key's claim (as every refusal).
        aware = occurred.tzinfo is not None
        now = utcnow()
        return (principal, key, fingerprint, self.partner_id, data.card_number,
                data.partner_txn_id, data.amount, data.currency, data.category,
                occurred if aware else None,
                # The answer's occurredAt as the API's encoder writes a datetime.
                msgspec.json.encode(occurred).decode()[1:-1],
                minor_per_unit(data.currency), now - MAX_ACCRUAL_AGE, now + CLOCK_SKEW,
                add_months(occurred, default_config().lot_validity_months) if aware else None)

    def refusal(self, exc: asyncpg.PostgresError) -> Exception | None:
        """The problem for partner_accrue()'s refusals and ledger_post()'s errors; None for
        anything else."""
        state = getattr(exc, "sqlstate", None)
        if state == "PA001":
            return PartnerNotFound()
        if state == "PA002":
            return PartnerSuspended()
        if state == "PA003":
            return CurrencyMismatch(f"The contract's currency is {exc.detail}",
                                    field="currency")
        if state == "PA004":
            return InvalidOccurredAt(field="occurredAt")
        if state == "PA005":
            return MemberNotFound()
        if state == "PA006":
            data = self.data
            return NoEarnRate(f"No rate for {data.category!r} at "
                              f"{data.occurred_at.isoformat()}", field="category")
        if state == "PA007":
            return DuplicatePartnerTransaction()
        error = ledger_error(exc, f"partner:{self.partner_id}", self.data.partner_txn_id)
        if isinstance(error, DuplicateExternalReference):
            return DuplicatePartnerTransaction()
        return error if isinstance(error, LmsError) else None


class PartnerAccrualService:
    """Partner accruals as read back, and their reversals, on the partner's clearing
    account."""

    def __init__(self, session: AsyncSession, system: SystemAccounts) -> None:
        self.session = session
        self.repo = PartnerRepository(session)
        self.members = MemberRepository(session)
        self.ledger = Ledger(session, system)

    async def _partner(self, partner_id: int) -> Partner:
        partner = await self.repo.by_id(partner_id)
        if partner is None or partner.clearing_account_id is None:
            raise PartnerNotFound()
        if partner.status != "active":
            raise PartnerSuspended()
        return partner

    async def _accrual(self, partner_id: int, partner_txn_id: str, *, lock: bool = False
                       ) -> PartnerAccrual:
        # Filtered by the calling partner: another partner's transaction is simply not found.
        accrual = await self.repo.accrual(partner_id, partner_txn_id, lock=lock)
        if accrual is None:
            raise AccrualNotFound()
        return accrual

    async def get(self, partner_id: int, partner_txn_id: str) -> AccrualOut:
        accrual = await self._accrual(partner_id, partner_txn_id)
        member = await self.members.by_id(accrual.member_id)
        assert member is not None
        return AccrualOut(id=accrual.entry_id, card_number=member.card_number,
                          partner_txn_id=accrual.partner_txn_id, miles=accrual.miles,
                          amount=accrual.amount_minor, currency=accrual.currency,
                          category=accrual.category, occurred_at=accrual.occurred_at,
                          reversed_amount=accrual.reversed_amount_minor,
                          reversed_miles=accrual.reversed_miles)

    async def reverse(self, partner_id: int, partner_txn_id: str,
                      data: ReversalRequest) -> ReversalOut:
        """Take back the miles of all or part of a purchase.

        Miles are proportional to the amount reversed so far in total, rounded down, and
        this reversal takes the difference from what earlier ones took: partial reversals
        add up to exactly the credited miles when the whole amount is reversed, and never
        more. The accrual row is locked, so concurrent reversals run one after the other.
        Miles the member has already spent are still taken back: the shortfall becomes debt
        on the member's account, repaid by later accruals.
        """
        partner = await self._partner(partner_id)
        accrual = await self._accrual(partner.id, partner_txn_id, lock=True)
        remaining = accrual.amount_minor - accrual.reversed_amount_minor
        amount = remaining if data.amount is None else data.amount
        if remaining == 0 or amount > remaining:
            raise ReversalExceedsAccrual(f"{remaining} of {accrual.amount_minor} is left",
                                         remainingAmount=remaining)
        total_amount = accrual.reversed_amount_minor + amount
        take = accrual.miles * total_amount // accrual.amount_minor - accrual.reversed_miles
        entry_id, balance_after = None, None
        if take > 0:
            member = await self.members.by_id(accrual.member_id)
            assert member is not None
            clearing = clearing_shard(await self.repo.clearing_shards(partner.id), member.id)
            entry = await self.ledger.post(
                kind=EntryKind.REVERSAL, actor=Actor("partner", str(partner.id)),
                description=data.reason or f"{partner.name}: purchase returned",
                legs=[Leg(member.account_id, Unit.MILES, -take),
                      Leg(clearing, Unit.MILES, take)],
                details={"partnerTxnId": partner_txn_id, "accrualEntryId":
                         accrual.entry_id, "amount": amount},
                # The member's miles.debited comes from the journal (lms/outbox/feed.py).
                events=[("accrual.reversed", {
                    "partnerId": partner.id, "partnerTxnId": partner_txn_id,
                    "amount": amount, "miles": take})],
                debt_account=member.account_id)
            entry_id = entry.id
            balance_after = entry.balances.get((member.account_id, Unit.MILES))
        await self.repo.add_reversal(accrual_id=accrual.id, entry_id=entry_id,
                                     amount_minor=amount, miles=take, reason=data.reason)
        return ReversalOut(id=entry_id, partner_txn_id=partner_txn_id, amount=amount,
                           miles=take, total_reversed_amount=total_amount,
                           total_reversed_miles=accrual.reversed_miles + take,
                           remaining_amount=accrual.amount_minor - total_amount,
                           balance_after=balance_after)
