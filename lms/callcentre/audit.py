"""Who is acting (a staff principal and the address they called from) and the audit record
each of their actions leaves, written in the same unit of work as the action itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.audit.models import AuditRecord
from lms.auth.principal import Principal
from lms.callcentre.paging import NO_CURSOR, decode_cursor, encode_cursor
from lms.callcentre.repository import CallCentreRepository
from lms.callcentre.schemas import AuditOut, AuditPage
from lms.ledger.types import Actor


@dataclass(frozen=True, slots=True)
class StaffContext:
    principal: Principal
    ip: str | None

    @property
    def staff_id(self) -> int:
        return self.principal.id

    @property
    def role(self) -> str:
        return str(self.principal.role)

    @property
    def actor(self) -> Actor:
        return Actor("staff", str(self.principal.id))


def plain(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON-safe (dates and the like as strings) for the audit log's jsonb columns."""
    return None if value is None else dict(json.loads(json.dumps(value, default=str)))


async def record(repo: CallCentreRepository, ctx: StaffContext, action: str, *,
                 target_type: str | None, target_id: object | None,
                 before: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None) -> None:
    await repo.audit(actor_type=ctx.principal.type, actor_id=str(ctx.principal.id),
                     actor_role=ctx.role, ip=ctx.ip, action=action, target_type=target_type,
                     target_id=None if target_id is None else str(target_id),
                     before=plain(before), after=plain(after))


def split_ref(value: str | None) -> tuple[str | None, str | None]:
    """``type:id`` or a bare id."""
    if value is None or not value.strip():
        return None, None
    kind, sep, ident = value.strip().partition(":")
    return (kind, ident) if sep else (None, kind)


class AuditLog:
    """Reading the audit log (supervisors and admins)."""

    def __init__(self, session: AsyncSession) -> None:
        self.repo = CallCentreRepository(session)

    async def search(self, *, actor: str | None, action: str | None, target: str | None,
                     since: datetime | None, until: datetime | None, cursor: str | None,
                     limit: int) -> AuditPage:
        actor_type, actor_id = split_ref(actor)
        target_type, target_id = split_ref(target)
        key = decode_cursor(cursor, (int,)) or [NO_CURSOR]
        rows = await self.repo.audit_records(
            actor_type=actor_type, actor_id=actor_id, action=action or None,
            target_type=target_type, target_ids=None if target_id is None else [target_id],
            since=since, until=until, before=key[0], limit=limit + 1)
        items = [audit_out(r) for r in rows[:limit]]
        return AuditPage(items=items, next_cursor=encode_cursor([items[-1].id])
                         if len(rows) > limit else None)


def audit_out(r: AuditRecord) -> AuditOut:
    return AuditOut(id=r.id, at=r.at, actor_type=r.actor_type, actor_id=r.actor_id,
                    actor_role=r.actor_role, ip=r.ip, action=r.action,
                    target_type=r.target_type, target_id=r.target_id, before=r.before,
                    after=r.after)
