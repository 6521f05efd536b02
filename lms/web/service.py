"""Rules of web sign-in: server-side sessions (idle and absolute expiry, sign-out everywhere)
and single-use password-reset links. Passwords and throttling are lms.auth's and lms.accounts'."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.service import MemberService
from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from lms.web.errors import ResetLinkInvalid
from lms.web.repository import WebRepository

# More reset mails than this per member per hour are not sent (a nuisance, not a risk).
RESETS_PER_HOUR = 5


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str  # for the cookie only; the database keeps its hash
    csrf_token: str


@dataclass(frozen=True, slots=True)
class LiveSession:
    principal: Principal
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ResetLink:
    """What the reset mail needs; ``token`` goes into the link and nowhere else."""

    email: str
    first_name: str
    locale: str
    token: str


class WebSessionService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repo = WebRepository(session)
        self.settings = settings

    async def open(self, principal: Principal, *, ip: str | None,
                   user_agent: str | None) -> OpenedSession:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await self.repo.add_session(
            token_hash=digest(token), principal_type=principal.type,
            principal_id=principal.id, role=str(principal.role), csrf_token=csrf,
            created_at=now, last_seen_at=now,
            expires_at=now + timedelta(seconds=self.settings.web_session_absolute_seconds),
            ip=ip, user_agent=(user_agent or "")[:300] or None)
        return OpenedSession(token, csrf)

    async def resume(self, token: str, principal_type: str) -> LiveSession | None:
        """The session of a cookie, if it is still live; using it restarts the idle clock."""
        now = datetime.now(UTC)
        row = await self.repo.touch_live_session(
            digest(token), principal_type, now,
            now - timedelta(seconds=self.settings.web_session_idle_seconds))
        if row is None:
            return None
        return LiveSession(Principal(row.principal_type, row.principal_id, Role(row.role)),
                           row.csrf_token, row.expires_at)

    async def close(self, token: str) -> None:
        await self.repo.revoke(digest(token), datetime.now(UTC))

    async def close_all(self, principal: Principal) -> int:
        """Sign out everywhere: every web session and every API token of the principal."""
        now = datetime.now(UTC)
        await AuthService(self.repo.session, self.settings).revoke_all(principal.type,
                                                                   principal.id)
        return await self.repo.revoke_all(principal.type, principal.id, now)


class PasswordResetService:
    def __init__(self, session: AsyncSession, settings: Settings,
                 system: SystemAccounts) -> None:
        self.repo = WebRepository(session)
        self.settings = settings
        self.members = MemberService(session, settings, system)
        self.sessions = WebSessionService(session, settings)

    async def request(self, email: str) -> ResetLink | None:
        """A link for the member with this e-mail, or None (unknown, not active, or too many
        links this hour). Callers answer the same either way, so that the form does not
        reveal who is a member."""
        member = await self.members.by_email(email)
        if member is None or member.status != "active":
            return None
        now = datetime.now(UTC)
        if await self.repo.resets_since(member.id, now - timedelta(hours=1)) \
                >= RESETS_PER_HOUR:
            return None
        token = secrets.token_urlsafe(32)
        await self.repo.add_reset(
            member.id, digest(token),
            now + timedelta(seconds=self.settings.password_reset_ttl_seconds))
        return ResetLink(member.email, member.first_name, member.locale, token)

    async def check(self, token: str) -> None:
        if await self.repo.live_reset(digest(token), datetime.now(UTC)) is None:
            raise ResetLinkInvalid()

    async def reset(self, token: str, new_password: str) -> int:
        """Set the password once per link, then sign the member out everywhere. A weak
        password rolls the whole unit of work back, so the link still works."""
        now = datetime.now(UTC)
        member_id = await self.repo.use_reset(digest(token), now)
        if member_id is None:
            raise ResetLinkInvalid()
        await self.members.set_password(member_id, new_password)
        await self.repo.end_resets(member_id, now)
        await self.sessions.close_all(Principal("member", member_id, Role.MEMBER))
        return member_id
