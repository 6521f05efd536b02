"""Member enrolment, sign-in, profile, balance and statement."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.cards import make_card_number
from lms.accounts.models import Member
from lms.accounts.repository import MemberRepository, birth_date_plausible
from lms.accounts.schemas import (
    BalanceResponse,
    ExpiringLot,
    RegisterRequest,
    StatementLine,
    StatementPage,
    UnitBalance,
)
from lms.auth.passwords import hash_password, verify_password
from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService, InvalidCredentials
from lms.errors import Conflict, NotFound, ValidationFailed
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Unit
from lms.outbox.service import emit
from lms.settings import Settings


class EmailTaken(Conflict):
    code = "email_taken"
    title = "A member with this e-mail already exists"


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "Member not found"


class MemberNotActive(Conflict):
    code = "member_not_active"
    title = "The member is locked or closed"


@dataclass(frozen=True, slots=True)
class Enrolment:
    member: Member
    token: str
    expires_at: datetime


def normalise_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed(f"E-mail address is not valid: {exc}", field="email") from exc


def normalise_phone(raw: str | None, region_hint: str | None) -> tuple[str | None, str | None]:
    """E.164 and the region, so that any way of typing a number finds the member."""
    if raw is None or not raw.strip():
        return None, None
    try:
        parsed = phonenumbers.parse(raw, None if raw.strip().startswith("+") else region_hint)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed(f"Phone number is not valid: {exc}", field="phone") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationFailed("Phone number is not valid", field="phone")
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(parsed))


class MemberService:
    def __init__(self, session: AsyncSession, settings: Settings,
                 system: SystemAccounts) -> None:
        self.session = session
        self.settings = settings
        self.repo = MemberRepository(session)
        self.ledger = Ledger(session, system)
        self.auth = AuthService(session, settings)

    async def register(self, data: RegisterRequest) -> Enrolment:
        email = normalise_email(data.email)
        region = data.locale.split("-")[1] if "-" in data.locale else None
        phone, phone_region = normalise_phone(data.phone, region)
        if not birth_date_plausible(data.birth_date, date.today()):
            raise ValidationFailed("Birth date is not plausible", field="birthDate")
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationFailed("Unknown time zone", field="timezone") from exc
        if not data.first_name.strip() or not data.last_name.strip():
            raise ValidationFailed("Names must not be blank")
        if await self.repo.email_taken(email):
            raise EmailTaken()

        account_id = await self.ledger.open_account(AccountKind.MEMBER)
        card = make_card_number(self.settings.card_number_prefix,
                                await self.repo.next_card_sequence())
        try:
            async with self.session.begin_nested():
                member = await self.repo.add(
                    card_number=card, account_id=account_id, email=email,
                    password_hash=hash_password(data.password),
                    first_name=data.first_name.strip(), last_name=data.last_name.strip(),
                    phone=phone, phone_region=phone_region, birth_date=data.birth_date,
                    locale=data.locale, timezone=data.timezone)
        except IntegrityError as exc:  # the same e-mail registered concurrently
            raise EmailTaken() from exc
        token, expires = await self.auth.issue_token(Principal("member", member.id, Role.MEMBER))
        await emit(self.session, "member.enrolled", {
            "memberId": member.id, "cardNumber": card, "locale": data.locale})
        return Enrolment(member, token, expires)

    async def sign_in(self, email: str, password: str) -> tuple[str, datetime]:
        subject = "member:" + email.strip().lower()
        await self.auth.check_throttle(subject)
        member = await self.repo.by_email(email.strip().lower())
        if not verify_password(password, member.password_hash if member else None) \
                or member is None:
            await self.auth.record_failure(subject)
            raise InvalidCredentials()
        if member.status == "closed":
            raise MemberNotActive()
        return await self.auth.issue_token(Principal("member", member.id, Role.MEMBER))

    async def get(self, member_id: int) -> Member:
        member = await self.repo.by_id(member_id)
        if member is None:
            raise MemberNotFound()
        return member

    async def balance(self, member_id: int) -> BalanceResponse:
        member = await self.get(member_id)
        balances = await self.ledger.balances(member.account_id)
        lots = await self.ledger.open_lots(member.account_id, limit=5)
        soon = datetime.now(UTC) + timedelta(days=90)
        return BalanceResponse(
            card_number=member.card_number,
            balances=[UnitBalance(unit=str(b.unit), posted=b.posted, held=b.held,
                                  available=b.available) for b in balances],
            next_expiring=[ExpiringLot(miles=r["remaining"], expires_at=r["expires_at"])
                           for r in lots],
            expiring_in_90_days=await self.ledger.expiring_between_now_and(
                member.account_id, soon),
        )

    async def statement(self, member_id: int, *, unit: Unit, cursor: str | None,
                        limit: int) -> StatementPage:
        member = await self.get(member_id)
        before = decode_cursor(cursor)
        rows = await self.repo.statement(member.account_id, str(unit), before, limit + 1)
        lines = [StatementLine(**r) for r in rows[:limit]]
        next_cursor = encode_cursor(lines[-1].id) if len(rows) > limit else None
        return StatementPage(lines=lines, next_cursor=next_cursor)


def encode_cursor(posting_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": posting_id}).encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 2**63 - 1
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))["before"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed("Cursor is not valid", field="cursor") from exc
    if not isinstance(value, int) or value <= 0:
        raise ValidationFailed("Cursor is not valid", field="cursor")
    return value
