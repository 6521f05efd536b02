"""Balance adjustments by staff: a reason code from the managed list and a comment; within
the role's limits (per adjustment, and per UTC day and unit) they post at once, above them
they wait for a supervisor, who approves or rejects with a comment. Nobody decides their own.

Limits bind what a staff user posts on their own authority. An approval is the control for
what is above it, so what a supervisor approves is not counted against their own allowance.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.accounts.models import Member
from lms.auth.principal import Role
from lms.callcentre.audit import StaffContext, record
from lms.callcentre.errors import (
    AdjustmentNotFound,
    AdjustmentNotPending,
    MemberClosed,
    OwnAdjustment,
    ReasonCodeExists,
    ReasonCodeInactive,
    ReasonCodeNotFound,
)
from lms.callcentre.models import Adjustment, AdjustmentLimit, ReasonCode
from lms.callcentre.paging import NO_CURSOR, decode_cursor, encode_cursor
from lms.callcentre.repository import CallCentreRepository
from lms.callcentre.schemas import (
    AdjustmentOut,
    AdjustmentPage,
    AdjustmentRequest,
    LimitSet,
    ReasonCodeCreate,
)
from lms.clock import utcnow
from lms.ledger.errors import InsufficientMiles
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind, Leg, SystemAccount, Unit

SOURCE = "adjustment"
PENDING = "pending_approval"


def adjustment_out(a: Adjustment, card: str) -> AdjustmentOut:
    return AdjustmentOut(
        id=a.id, card_number=card, direction=a.direction, unit=a.unit, amount=a.amount,
        reason_code=a.reason_code, comment=a.comment, status=a.status,
        pending_reason=a.pending_reason, requested_by=a.requested_by,
        requested_role=a.requested_role, requested_at=a.requested_at,
        decided_by=a.decided_by, decision_comment=a.decision_comment,
        decided_at=a.decided_at, entry_id=a.entry_id)


def facts(a: Adjustment) -> dict[str, Any]:
    return {"adjustmentId": a.id, "direction": a.direction, "unit": a.unit,
            "amount": a.amount, "reasonCode": a.reason_code, "comment": a.comment,
            "status": a.status, "pendingReason": a.pending_reason,
            "requestedBy": a.requested_by, "decidedBy": a.decided_by,
            "decisionComment": a.decision_comment, "entryId": a.entry_id}


class AdjustmentService:
    def __init__(self, session: AsyncSession, system: SystemAccounts,
                 ctx: StaffContext) -> None:
        self.repo = CallCentreRepository(session)
        self.ledger = Ledger(session, system)
        self.system = system
        self.ctx = ctx

    # -- reason codes ------------------------------------------------------------------------

    async def reason_codes(self, *, active_only: bool) -> list[ReasonCode]:
        return await self.repo.reason_codes(active_only)

    async def add_reason_code(self, data: ReasonCodeCreate) -> ReasonCode:
        code = await self.repo.add_reason_code(data.code, data.description)
        if code is None:
            raise ReasonCodeExists()
        await record(self.repo, self.ctx, "reason_code.create", target_type="reason_code",
                     target_id=code.code, after={"description": code.description,
                                                 "active": True})
        return code

    async def set_reason_code_active(self, code: str, active: bool) -> ReasonCode:
        before = await self.repo.reason_code(code)
        if before is None:
            raise ReasonCodeNotFound()
        was = before.active
        changed = await self.repo.set_reason_code_active(code, active, utcnow())
        assert changed is not None
        await record(self.repo, self.ctx,
                     "reason_code.activate" if active else "reason_code.deactivate",
                     target_type="reason_code", target_id=code, before={"active": was},
                     after={"active": active})
        return changed

    # -- limits ------------------------------------------------------------------------------

    async def limits(self) -> list[AdjustmentLimit]:
        return await self.repo.limits()

    async def set_limit(self, role: Role, data: LimitSet) -> AdjustmentLimit:
        before = await self.repo.limit_for(str(role))
        was = None if before is None else {"perAdjustment": before.per_adjustment,
                                           "perDay": before.per_day}
        limit = await self.repo.set_limit(str(role), data.per_adjustment, data.per_day,
                                          utcnow())
        await record(self.repo, self.ctx, "adjustment_limit.set", target_type="role",
                     target_id=str(role), before=was,
                     after={"perAdjustment": limit.per_adjustment, "perDay": limit.per_day})
        return limit

    # -- adjustments -------------------------------------------------------------------------

    async def _member(self, card: str) -> Member:
        member = await self.repo.member_by_card(card)
        if member is None:
            raise MemberNotFound()
        if member.status == "closed":
            raise MemberClosed()
        return member

    async def _available(self, member: Member, unit: str) -> tuple[int, int]:
        by_unit = {str(b.unit): b for b in await self.ledger.balances(member.account_id)}
        return by_unit[unit].posted, by_unit[unit].available

    async def create(self, card: str, data: AdjustmentRequest) -> AdjustmentOut:
        member = await self._member(card)
        reason = await self.repo.reason_code(data.reason_code)
        if reason is None:
            raise ReasonCodeNotFound(f"No reason code {data.reason_code!r}")
        if not reason.active:
            raise ReasonCodeInactive(f"The reason code {data.reason_code!r} is deactivated")
        posted_before, available = await self._available(member, data.unit)
        # A debit that cannot be posted is refused now, not queued for a supervisor.
        if data.direction == "debit" and available < data.amount:
            raise InsufficientMiles(f"{available} {data.unit} available, {data.amount} to "
                                    "debit", available=available, requested=data.amount)
        pending_reason = await self._over_limit(data.unit, data.amount)
        adjustment = await self.repo.add_adjustment(
            member_id=member.id, direction=data.direction, unit=data.unit,
            amount=data.amount, reason_code=data.reason_code, comment=data.comment,
            status=PENDING, pending_reason=pending_reason, requested_by=self.ctx.staff_id,
            requested_role=self.ctx.role)
        if pending_reason is None:
            adjustment = await self._post(adjustment, member, reason.description)
        after = facts(adjustment)
        if adjustment.status == "posted":
            after["balance"] = await self._balance(member, data.unit)
        await record(self.repo, self.ctx,
                     "adjustment.post" if pending_reason is None else "adjustment.request",
                     target_type="member", target_id=member.card_number,
                     before={"unit": data.unit, "balance": posted_before}, after=after)
        return adjustment_out(adjustment, member.card_number)

    async def _over_limit(self, unit: str, amount: int) -> str | None:
        """Why this adjustment needs a supervisor, or None (and then it is counted against
        today's allowance)."""
        limit = await self.repo.limit_for(self.ctx.role)
        if limit is None or amount > limit.per_adjustment:
            return "per_adjustment_limit"
        if not await self.repo.use_daily_allowance(self.ctx.staff_id, utcnow().date(), unit,
                                                   amount, limit.per_day):
            return "daily_limit"
        return None

    async def _balance(self, member: Member, unit: str) -> int:
        return (await self._available(member, unit))[0]

    async def _post(self, a: Adjustment, member: Member, description: str,
                    comment: str | None = None) -> Adjustment:
        counter = self.system.pick(SystemAccount.ADJUSTMENTS)
        amount = a.amount if a.direction == "credit" else -a.amount
        unit = Unit(a.unit)
        entry = await self.ledger.post(
            kind=EntryKind.ADJUSTMENT, actor=self.ctx.actor, description=description,
            source=SOURCE, external_ref=str(a.id),
            legs=[Leg(counter, unit, -amount), Leg(member.account_id, unit, amount)],
            details={"adjustmentId": a.id, "reasonCode": a.reason_code,
                     "requestedBy": a.requested_by, "approvedBy":
                     self.ctx.staff_id if a.requested_by != self.ctx.staff_id else None})
        values: dict[str, Any] = {"status": "posted", "entry_id": entry.id}
        if comment is not None:
            values |= {"decided_by": self.ctx.staff_id, "decision_comment": comment,
                       "decided_at": utcnow()}
        return await self.repo.decide(a.id, **values)

    async def _pending(self, adjustment_id: int) -> tuple[Adjustment, Member]:
        """The adjustment, locked: a concurrent decision waits here and then finds it
        decided."""
        a = await self.repo.adjustment(adjustment_id, lock=True)
        if a is None:
            raise AdjustmentNotFound()
        if a.status != PENDING:
            raise AdjustmentNotPending(f"The adjustment is {a.status}",
                                       adjustmentStatus=a.status)
        if a.requested_by == self.ctx.staff_id:
            raise OwnAdjustment()
        member = await self.repo.member_by_id(a.member_id)
        assert member is not None
        return a, member

    async def approve(self, adjustment_id: int, comment: str) -> AdjustmentOut:
        a, member = await self._pending(adjustment_id)
        if member.status == "closed":
            raise MemberClosed("The member was closed since; reject the adjustment")
        reason = await self.repo.reason_code(a.reason_code)
        assert reason is not None
        before = await self._balance(member, a.unit)
        a = await self._post(a, member, reason.description, comment)
        await record(self.repo, self.ctx, "adjustment.approve", target_type="member",
                     target_id=member.card_number, before={"unit": a.unit, "balance": before,
                                                           "status": PENDING},
                     after=facts(a) | {"balance": await self._balance(member, a.unit)})
        return adjustment_out(a, member.card_number)

    async def reject(self, adjustment_id: int, comment: str) -> AdjustmentOut:
        a, member = await self._pending(adjustment_id)
        a = await self.repo.decide(a.id, status="rejected", decided_by=self.ctx.staff_id,
                                   decision_comment=comment, decided_at=utcnow())
        await record(self.repo, self.ctx, "adjustment.reject", target_type="member",
                     target_id=member.card_number, before={"status": PENDING},
                     after=facts(a))
        return adjustment_out(a, member.card_number)

    async def get(self, adjustment_id: int) -> AdjustmentOut:
        a = await self.repo.adjustment(adjustment_id)
        if a is None or (self._own_only() and a.requested_by != self.ctx.staff_id):
            raise AdjustmentNotFound()
        member = await self.repo.member_by_id(a.member_id)
        assert member is not None
        return adjustment_out(a, member.card_number)

    def _own_only(self) -> bool:
        return self.ctx.principal.role is Role.AGENT

    async def list(self, *, status: str | None, cursor: str | None,
                   limit: int) -> AdjustmentPage:
        """Agents see their own requests; supervisors and admins see everyone's (the
        approval queue is ``status=pending_approval``)."""
        key = decode_cursor(cursor, (int,)) or [NO_CURSOR]
        rows = await self.repo.adjustments(
            status=status, requested_by=self.ctx.staff_id if self._own_only() else None,
            member_ids=None, before=key[0], limit=limit + 1)
        items = [adjustment_out(a, c) for a, c in rows[:limit]]
        return AdjustmentPage(items=items, next_cursor=encode_cursor([items[-1].id])
                              if len(rows) > limit else None)
