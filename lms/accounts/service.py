"""Member enrolment, sign-in, profile, balance and statement."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.balance_reads import BalanceReads
from lms.accounts.cards import make_card_number
from lms.accounts.errors import (
    EmailTaken,
    InvalidBirthDate,
    InvalidCursor,
    InvalidEmail,
    InvalidName,
    InvalidPhone,
    InvalidTimezone,
    MemberNotFound,
    WeakPassword,
    WrongPassword,
)
from lms.accounts.models import Member
from lms.accounts.repository import MemberRepository, balance_page
from lms.accounts.schemas import (
    BalanceResponse,
    ExpiringLot,
    ProfileUpdate,
    RegisterRequest,
    StatementLine,
    StatementPage,
    UnitBalance,
)
from lms.auth.passwords import hash_password_async, password_weakness, verify_password_async
from lms.auth.principal import Principal, Role
from lms.auth.service import (
    AuthService,
    Credential,
    SignIn,
    Verified,
    canonical_email,
    token_hash,
)
from lms.db import Database, RawConnection, raw_connection
from lms.ledger.errors import AccountNotFound
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Unit
from lms.outbox.service import emit
from lms.settings import Settings

__all__ = ["EmailTaken", "Enrolment", "MemberNotFound", "MemberService"]

OLDEST_PLAUSIBLE_AGE_YEARS = 120
EXPIRY_HORIZON = timedelta(days=90)
NEXT_LOTS = 5


@dataclass(frozen=True, slots=True)
class Enrolment:
    member: Member


def normalise_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidEmail("email", f"The e-mail address is not valid: {exc}") from exc


def normalise_phone(raw: str | None, region_hint: str | None) -> tuple[str | None, str | None]:
    """E.164 and the region, so that any way of typing a number finds the member."""
    if raw is None or not raw.strip():
        return None, None
    try:
        parsed = phonenumbers.parse(raw, None if raw.strip().startswith("+") else region_hint)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("phone", f"The phone number is not valid: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("phone")
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(parsed))


def clean_name(raw: str, field: str) -> str:
    name = " ".join(raw.split())
    if not name or not name.isprintable():
        raise InvalidName(field)
    return name


def check_birth_date(value: date | None, today: date) -> None:
    if value is None:
        return
    if value > today:
        raise InvalidBirthDate("birthDate", "The birth date is in the future")
    if value.year < today.year - OLDEST_PLAUSIBLE_AGE_YEARS:
        raise InvalidBirthDate("birthDate",
                               f"The birth date is more than {OLDEST_PLAUSIBLE_AGE_YEARS} "
                               "years ago")


def check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimezone("timezone") from exc


class MemberService:
    def __init__(self, session: AsyncSession, settings: Settings,
                 system: SystemAccounts) -> None:
        self.session = session
        self.settings = settings
        self.repo = MemberRepository(session)
        self.ledger = Ledger(session, system)
        self.auth = AuthService(session, settings)

    async def register(self, data: RegisterRequest) -> Enrolment:
        """Enrol a member. Every check runs before the first write, and the caller's
        transaction rolls back on any error, so a refused enrolment leaves nothing behind."""
        email = normalise_email(data.email)
        weakness = password_weakness(data.password, email)
        if weakness:
            raise WeakPassword("password", weakness)
        first_name = clean_name(data.first_name, "firstName")
        last_name = clean_name(data.last_name, "lastName")
        region = data.locale.split("-")[1] if "-" in data.locale else None
        phone, phone_region = normalise_phone(data.phone, region)
        check_birth_date(data.birth_date, datetime.now(UTC).date())
        check_timezone(data.timezone)
        if await self.repo.email_taken(email):
            raise EmailTaken()

        password_hash = await hash_password_async(data.password)
        account_id = await self.ledger.open_account(AccountKind.MEMBER)
        card = make_card_number(self.settings.card_number_prefix,
                                await self.repo.next_card_sequence())
        try:
            async with self.session.begin_nested():
                member = await self.repo.add(
                    card_number=card, account_id=account_id, email=email,
                    password_hash=password_hash,
                    first_name=first_name, last_name=last_name,
                    phone=phone, phone_region=phone_region, birth_date=data.birth_date,
                    locale=data.locale, timezone=data.timezone)
        except IntegrityError as exc:
            # The same e-mail enrolled by a concurrent request after our check.
            if "uq_members_email" in str(exc.orig):
                raise EmailTaken() from exc
            raise
        await emit(self.session, "member.enrolled", {
            "memberId": member.id, "cardNumber": card, "locale": data.locale})
        return Enrolment(member)

    async def sign_in(self, email: str, password: str) -> SignIn:
        email = canonical_email(email)
        return await self.auth.sign_in("member:" + email, await self.credential(email),
                                       password)

    async def verify(self, email: str, password: str) -> Verified:
        """The password check of ``sign_in`` (same throttling) without issuing a token."""
        email = canonical_email(email)
        return await self.auth.verify("member:" + email, await self.credential(email),
                                      password)

    async def credential(self, email: str) -> Credential | None:
        member = await self.repo.by_email(email)
        return None if member is None else Credential(
            Principal("member", member.id, Role.MEMBER), member.password_hash,
            member.status == "active")

    async def by_email(self, email: str) -> Member | None:
        return await self.repo.by_email(canonical_email(email))

    async def by_card(self, card_number: str) -> Member | None:
        return await self.repo.by_card("".join(card_number.split()))

    async def update_profile(self, member_id: int, data: ProfileUpdate) -> Member:
        """Change names, phone, language and time zone, with the checks of enrolment."""
        member = await self.get(member_id)
        first_name = clean_name(data.first_name, "firstName")
        last_name = clean_name(data.last_name, "lastName")
        region = data.locale.split("-")[1] if "-" in data.locale else member.phone_region
        phone, phone_region = normalise_phone(data.phone, region)
        check_timezone(data.timezone)
        member = await self.repo.update(member_id, first_name=first_name,
                                         last_name=last_name, phone=phone,
                                         phone_region=phone_region, locale=data.locale,
                                         timezone=data.timezone)
        await emit(self.session, "member.updated", {"memberId": member_id})
        return member

    async def set_locale(self, member_id: int, locale: str) -> None:
        await self.repo.update(member_id, locale=locale)

    async def change_password(self, member_id: int, current: str, new: str) -> None:
        """Needs the current password; signs the member out of every API token."""
        member = await self.get(member_id)
        if not await verify_password_async(current, member.password_hash):
            raise WrongPassword("currentPassword")
        await self.set_password(member_id, new)

    async def set_password(self, member_id: int, new: str) -> None:
        """Set a new password (after the current one or a reset link was checked) and
        revoke the member's access tokens."""
        member = await self.get(member_id)
        weakness = password_weakness(new, member.email)
        if weakness:
            raise WeakPassword("password", weakness)
        await self.repo.update(member_id, password_hash=await hash_password_async(new))
        await self.auth.revoke_all("member", member_id)

    async def get(self, member_id: int) -> Member:
        member = await self.repo.by_id(member_id)
        if member is None:
            raise MemberNotFound()
        return member

    async def balance(self, member_id: int) -> BalanceResponse:
        return await member_balance(await raw_connection(self.session), member_id)

    async def statement(self, member_id: int, *, unit: Unit, cursor: str | None,
                        limit: int, kind: str | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> StatementPage:
        """Lines newest first; ``kind`` (an entry kind) and [since, until) narrow them."""
        member = await self.get(member_id)
        before = decode_cursor(cursor)
        rows = await self.repo.statement(member.account_id, str(unit), before, limit + 1,
                                         kind=kind, since=since, until=until)
        lines = [StatementLine(**r) for r in rows[:limit]]
        next_cursor = encode_cursor(lines[-1].id) if len(rows) > limit else None
        return StatementPage(lines=lines, next_cursor=next_cursor)


def unit_balance(unit: Unit, posted: int, held: int) -> UnitBalance:
    available = posted - held
    return UnitBalance(unit=str(unit), posted=posted, held=held, available=available,
                       debt=max(0, -available))


async def member_balance(conn: RawConnection, member_id: int) -> BalanceResponse:
    """The member's balance page, in one statement (``BALANCE_PAGE``).

    Read-only, so the API runs it on a bare connection outside any transaction: under READ
    COMMITTED every statement takes its own snapshot inside a transaction too, so BEGIN and
    COMMIT (and a session) would only cost two round trips more and change nothing of what
    is read. One statement also reads the balances and the lots in one snapshot.
    """
    row = await balance_page(conn, member_id, datetime.now(UTC) + EXPIRY_HORIZON, NEXT_LOTS)
    return balance_from_page(row)


def balance_reads() -> BalanceReads:
    """An app's batcher of GET /v1/me/balance's statements (lms.accounts.balance_reads)."""
    return BalanceReads(EXPIRY_HORIZON, NEXT_LOTS)


async def token_balance_page(reads: BalanceReads, db: Database, token: str
                             ) -> tuple[Principal | None, asyncpg.Record | None]:
    """The bearer token's principal (None: not a live token) and its balance page, read by
    the statement that checks the token: the API's most frequent call, which would otherwise
    take one round trip to authenticate and another to read. The caller checks the
    principal's role before it reads the page (``balance_from_page``)."""
    row = await reads.page(db, token_hash(token))
    if row is None:
        return None, None
    return Principal(row["principal_type"], row["principal_id"], Role(row["role"])), row


def balance_from_page(row: asyncpg.Record | None) -> BalanceResponse:
    """The answer of a balance page's row: None, no such member."""
    if row is None or row["card_number"] is None:
        raise MemberNotFound()
    if row["units"] is None:
        raise AccountNotFound()
    by_unit = {unit: (posted, held) for unit, posted, held
               in zip(row["units"], row["posted"], row["held"], strict=True)}
    return BalanceResponse(
        card_number=row["card_number"],
        balances=[unit_balance(unit, *by_unit[unit]) for unit in Unit if unit in by_unit],
        next_expiring=[ExpiringLot(miles=miles, expires_at=expires_at)
                       for miles, expires_at in zip(row["remaining"] or (),
                                                    row["expires_at"] or (), strict=True)],
        expiring_in_90_days=row["expiring"],
    )


# Posting ids only grow, so "lines before posting N" is a stable page boundary however many
# lines are added while a member pages through.
NO_CURSOR = 2**63 - 1


def encode_cursor(posting_id: int) -> str:
    raw = json.dumps({"before": posting_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return NO_CURSOR
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)["before"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidCursor() from exc
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= NO_CURSOR:
        raise InvalidCursor()
    return value
