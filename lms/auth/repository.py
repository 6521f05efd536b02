"""SQL of authentication: tokens, failed attempts, staff users."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.models import AccessToken, LoginFailure, StaffUser
from lms.db import RawConnection

# A token is live until it expires or is revoked, checked in the database on every request
# (never cached), so that a revocation takes effect at once in every process. {hash} and
# {now} name the parameters: lms.accounts.repository.BALANCE_PAGES_FOR_TOKENS embeds it.
LIVE_TOKEN_OF = """
    SELECT principal_type, principal_id, role FROM access_tokens
     WHERE token_hash = {hash} AND expires_at > {now} AND revoked_at IS NULL"""
LIVE_TOKEN = LIVE_TOKEN_OF.format(hash="$1", now="$2")


async def live_token_row(conn: RawConnection, token_hash: str,
                         now: datetime) -> asyncpg.Record | None:
    """The live token's principal, in one statement on a bare connection: it runs before
    every authenticated request, where a session's BEGIN and COMMIT and the ORM would cost
    more than the lookup itself."""
    row: asyncpg.Record | None = await conn.fetchrow(LIVE_TOKEN, token_hash, now)
    return row


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_token(self, token_hash: str, principal_type: str, principal_id: int,
                        role: str, expires_at: datetime) -> None:
        await self.session.execute(insert(AccessToken).values(
            token_hash=token_hash, principal_type=principal_type, principal_id=principal_id,
            role=role, expires_at=expires_at))

    async def revoke_token(self, token_hash: str, now: datetime) -> None:
        await self.session.execute(update(AccessToken).where(
            AccessToken.token_hash == token_hash).values(revoked_at=now))

    async def revoke_all(self, principal_type: str, principal_id: int, now: datetime) -> None:
        await self.session.execute(update(AccessToken).where(
            AccessToken.principal_type == principal_type,
            AccessToken.principal_id == principal_id,
            AccessToken.revoked_at.is_(None)).values(revoked_at=now))

    async def lock_subject(self, subject: str) -> None:
        """Serialise sign-ins for one subject until the end of the transaction."""
        await self.session.execute(select(func.pg_advisory_xact_lock(
            func.hashtextextended(subject, 0))))

    async def recent_failures(self, subject: str, since: datetime) -> tuple[int, datetime | None]:
        row = (await self.session.execute(
            select(func.count(), func.min(LoginFailure.failed_at)).where(
                LoginFailure.subject == subject, LoginFailure.failed_at > since))).one()
        return int(row[0]), row[1]

    async def add_failure(self, subject: str) -> None:
        await self.session.execute(insert(LoginFailure).values(subject=subject))

    async def clear_failures(self, subject: str) -> None:
        await self.session.execute(delete(LoginFailure).where(LoginFailure.subject == subject))

    async def staff_by_email(self, email: str) -> StaffUser | None:
        return (await self.session.execute(
            select(StaffUser).where(StaffUser.email == email))).scalar_one_or_none()

    async def staff_by_id(self, staff_id: int) -> StaffUser | None:
        return await self.session.get(StaffUser, staff_id)

    async def add_staff(self, *, email: str, name: str, role: str, password_hash: str) -> int:
        staff_id: int = (await self.session.execute(insert(StaffUser).values(
            email=email, name=name, role=role, password_hash=password_hash
        ).returning(StaffUser.id))).scalar_one()
        return staff_id
