"""Sign-in rules shared by members and staff: throttling, opaque tokens, staff accounts.

A refused sign-in must still leave a trace (the failure that feeds throttling), so inside the
unit of work a refusal is an answer, not an exception: ``sign_in`` returns a ``SignIn`` whose
``token()`` raises the refusal once the transaction has committed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.models import StaffUser
from lms.auth.passwords import hash_password_async, verify_password_async
from lms.auth.principal import STAFF_ROLES, Principal, Role
from lms.auth.repository import AuthRepository, live_token_row
from lms.db import RawConnection
from lms.errors import (
    Conflict,
    Forbidden,
    LmsError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from lms.settings import Settings


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Wrong e-mail or password"


class SignInThrottled(TooManyRequests):
    code = "sign_in_throttled"
    title = "Too many failed sign-in attempts; try again later"


class AccountDisabled(Forbidden):
    code = "account_disabled"
    title = "This account is locked or closed"


class StaffNotFound(NotFound):
    code = "staff_not_found"
    title = "Staff user not found"


class StaffExists(Conflict):
    code = "staff_exists"
    title = "A staff user with this e-mail already exists"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def canonical_email(raw: str) -> str:
    """The form e-mails are stored in; lenient, since sign-in must not reveal validity."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return raw.strip().lower()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Credential:
    """What sign-in needs to know about an account, members and staff alike."""

    principal: Principal
    password_hash: str
    active: bool


@dataclass(frozen=True, slots=True)
class SignIn:
    issued: IssuedToken | None = None
    refusal: LmsError | None = None

    def token(self) -> IssuedToken:
        if self.refusal is not None:
            raise self.refusal
        assert self.issued is not None
        return self.issued


@dataclass(frozen=True, slots=True)
class Verified:
    """The answer of a password check: who signed in, or why not."""

    principal: Principal | None = None
    refusal: LmsError | None = None


async def principal_for_token(conn: RawConnection, token: str) -> Principal | None:
    """Who a bearer token belongs to, in one statement (the request path's lookup)."""
    row = await live_token_row(conn, token_hash(token), datetime.now(UTC))
    if row is None:
        return None
    return Principal(row["principal_type"], row["principal_id"], Role(row["role"]))


class AuthService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repo = AuthRepository(session)
        self.settings = settings

    async def check_throttle(self, subject: str) -> None:
        """Refuse any sign-in, even with the right password, while the subject has too many
        recent failures: otherwise throttling would only slow guessing down, not stop it."""
        now = datetime.now(UTC)
        window = timedelta(seconds=self.settings.login_lockout_seconds)
        count, oldest = await self.repo.recent_failures(subject, now - window)
        if count >= self.settings.login_max_failures and oldest is not None:
            retry = int((oldest + window - now).total_seconds()) + 1
            raise SignInThrottled(retry_after=retry)

    async def sign_in(self, subject: str, credential: Credential | None,
                      password: str) -> SignIn:
        """Check the password and issue a token, or record the failure and refuse.

        ``subject`` names what is throttled (``member:<email>``); ``credential`` is None when
        no account has that e-mail, which is refused exactly like a wrong password.
        """
        verified = await self.verify(subject, credential, password)
        if verified.refusal is not None:
            return SignIn(refusal=verified.refusal)
        assert verified.principal is not None
        return SignIn(issued=await self.issue_token(verified.principal))

    async def verify(self, subject: str, credential: Credential | None,
                     password: str) -> Verified:
        """``sign_in`` without the token: the same throttling and failure records, for
        callers that open a session of their own (the web pages, lms.web)."""
        # Without the lock, parallel guesses would all pass the throttle before any of their
        # failures is committed.
        await self.repo.lock_subject(subject)
        try:
            await self.check_throttle(subject)
        except SignInThrottled as exc:
            return Verified(refusal=exc)
        if not await verify_password_async(
                password, credential.password_hash if credential else None) \
                or credential is None:
            await self.repo.add_failure(subject)
            return Verified(refusal=InvalidCredentials())
        await self.repo.clear_failures(subject)
        if not credential.active:
            return Verified(refusal=AccountDisabled())
        return Verified(principal=credential.principal)

    async def issue_token(self, principal: Principal) -> IssuedToken:
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.access_token_ttl_seconds)
        await self.repo.add_token(token_hash(token), principal.type, principal.id,
                                  str(principal.role), expires)
        return IssuedToken(token, expires)

    async def revoke(self, token: str) -> None:
        await self.repo.revoke_token(token_hash(token), datetime.now(UTC))

    async def revoke_all(self, principal_type: str, principal_id: int) -> None:
        """Sign a principal out everywhere (a closed membership, for one)."""
        await self.repo.revoke_all(principal_type, principal_id, datetime.now(UTC))

    async def staff_sign_in(self, email: str, password: str) -> SignIn:
        email = canonical_email(email)
        return await self.sign_in("staff:" + email, await self.staff_credential(email),
                                  password)

    async def staff_verify(self, email: str, password: str) -> Verified:
        email = canonical_email(email)
        return await self.verify("staff:" + email, await self.staff_credential(email),
                                 password)

    async def staff_credential(self, email: str) -> Credential | None:
        staff = await self.repo.staff_by_email(email)
        return None if staff is None else Credential(
            Principal("staff", staff.id, Role(staff.role)), staff.password_hash, staff.active)


    async def get_staff(self, staff_id: int) -> StaffUser:
        staff = await self.repo.staff_by_id(staff_id)
        if staff is None:
            raise StaffNotFound()
        return staff

    async def create_staff(self, *, email: str, name: str, role: str, password: str) -> int:
        if role not in {str(r) for r in STAFF_ROLES}:
            raise ValidationFailed(f"Role must be one of {sorted(str(r) for r in STAFF_ROLES)}")
        if len(password) < 10:
            raise ValidationFailed("Staff passwords need at least 10 characters")
        email = canonical_email(email)
        if await self.repo.staff_by_email(email):
            raise StaffExists()
        return await self.repo.add_staff(email=email, name=name, role=role,
                                         password_hash=await hash_password_async(password))
