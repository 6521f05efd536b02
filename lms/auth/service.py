"""Sign-in rules shared by members and staff: throttling, opaque tokens, staff accounts."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.passwords import hash_password, verify_password
from lms.auth.principal import STAFF_ROLES, Principal, Role
from lms.auth.repository import AuthRepository
from lms.errors import Conflict, TooManyRequests, Unauthorized, ValidationFailed
from lms.settings import Settings


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Wrong e-mail or password"


class SignInThrottled(TooManyRequests):
    code = "sign_in_throttled"
    title = "Too many failed sign-in attempts; try again later"


class StaffExists(Conflict):
    code = "staff_exists"
    title = "A staff user with this e-mail already exists"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repo = AuthRepository(session)
        self.settings = settings

    async def check_throttle(self, subject: str) -> None:
        """Refuse a sign-in while the subject has too many recent failures."""
        now = datetime.now(UTC)
        window = timedelta(seconds=self.settings.login_lockout_seconds)
        count, oldest = await self.repo.recent_failures(subject, now - window)
        if count >= self.settings.login_max_failures and oldest is not None:
            retry = int((oldest + window - now).total_seconds()) + 1
            raise SignInThrottled(retry_after=retry)

    async def record_failure(self, subject: str) -> None:
        await self.repo.add_failure(subject)

    async def issue_token(self, principal: Principal) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.access_token_ttl_seconds)
        await self.repo.add_token(token_hash(token), principal.type, principal.id,
                                  str(principal.role), expires)
        return token, expires

    async def principal_for(self, token: str) -> Principal | None:
        row = await self.repo.live_token(token_hash(token), datetime.now(UTC))
        if row is None:
            return None
        return Principal(row.principal_type, row.principal_id, Role(row.role))

    async def revoke(self, token: str) -> None:
        await self.repo.revoke_token(token_hash(token), datetime.now(UTC))

    async def staff_sign_in(self, email: str, password: str) -> Principal:
        subject = "staff:" + email.strip().lower()
        await self.check_throttle(subject)
        staff = await self.repo.staff_by_email(email.strip().lower())
        if not verify_password(password, staff.password_hash if staff else None) \
                or staff is None or not staff.active:
            await self.record_failure(subject)
            raise InvalidCredentials()
        await self.repo.clear_failures(subject)
        return Principal("staff", staff.id, Role(staff.role))

    async def create_staff(self, *, email: str, name: str, role: str, password: str) -> int:
        if Role(role) not in STAFF_ROLES:
            raise ValidationFailed(f"Role must be one of {sorted(STAFF_ROLES)}")
        if len(password) < 10:
            raise ValidationFailed("Staff passwords need at least 10 characters")
        email = email.strip().lower()
        if await self.repo.staff_by_email(email):
            raise StaffExists()
        return await self.repo.add_staff(email=email, name=name, role=role,
                                         password_hash=hash_password(password))
