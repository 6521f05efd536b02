"""SQL of web sessions and password-reset tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.web.models import PasswordReset, WebSession


class WebRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_session(self, **values: object) -> None:
        await self.session.execute(insert(WebSession).values(**values))

    async def touch_live_session(self, token_hash: str, principal_type: str, now: datetime,
                                 idle_since: datetime) -> WebSession | None:
        """The live session of this hash, its last use moved to ``now``; None when there is
        none, it was revoked, passed its absolute end or has been idle since ``idle_since``."""
        return (await self.session.execute(
            update(WebSession)
            .where(WebSession.token_hash == token_hash,
                   WebSession.principal_type == principal_type,
                   WebSession.revoked_at.is_(None), WebSession.expires_at > now,
                   WebSession.last_seen_at > idle_since)
            .values(last_seen_at=now)
            .returning(WebSession))).scalar_one_or_none()

    async def revoke(self, token_hash: str, now: datetime) -> None:
        await self.session.execute(update(WebSession).where(
            WebSession.token_hash == token_hash, WebSession.revoked_at.is_(None)
        ).values(revoked_at=now))

    async def revoke_all(self, principal_type: str, principal_id: int, now: datetime) -> int:
        result = await self.session.execute(update(WebSession).where(
            WebSession.principal_type == principal_type,
            WebSession.principal_id == principal_id,
            WebSession.revoked_at.is_(None)).values(revoked_at=now)
            .returning(WebSession.id))
        return len(result.all())

    async def add_reset(self, member_id: int, token_hash: str, expires_at: datetime) -> None:
        await self.session.execute(insert(PasswordReset).values(
            member_id=member_id, token_hash=token_hash, expires_at=expires_at))

    async def resets_since(self, member_id: int, since: datetime) -> int:
        count: int = (await self.session.execute(
            select(func.count()).select_from(PasswordReset).where(
                PasswordReset.member_id == member_id,
                PasswordReset.created_at > since))).scalar_one()
        return count

    async def live_reset(self, token_hash: str, now: datetime) -> int | None:
        """The member of an unused, unexpired reset token."""
        member_id: int | None = (await self.session.execute(
            select(PasswordReset.member_id).where(
                PasswordReset.token_hash == token_hash, PasswordReset.used_at.is_(None),
                PasswordReset.expires_at > now))).scalar_one_or_none()
        return member_id

    async def use_reset(self, token_hash: str, now: datetime) -> int | None:
        """Mark the token used, once: of two concurrent uses only one gets the member."""
        member_id: int | None = (await self.session.execute(
            update(PasswordReset).where(
                PasswordReset.token_hash == token_hash, PasswordReset.used_at.is_(None),
                PasswordReset.expires_at > now).values(used_at=now)
            .returning(PasswordReset.member_id))).scalar_one_or_none()
        return member_id

    async def end_resets(self, member_id: int, now: datetime) -> None:
        """A new password makes every other link of the member useless."""
        await self.session.execute(update(PasswordReset).where(
            PasswordReset.member_id == member_id, PasswordReset.used_at.is_(None)
        ).values(used_at=now))
