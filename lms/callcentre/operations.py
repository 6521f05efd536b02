"""What staff do to a member beyond adjustments: reverse a journal entry, lock and unlock,
and merge a duplicate into the member it should have been.

Merging: the duplicate must have no pending hold (a partner may still capture it; the
supervisor voids or waits for it rather than have it voided from under the partner). One
``merge`` entry moves the duplicate's whole posted balance of every unit to the target, so
nothing is counted twice: afterwards the duplicate's balances are zero and its ledger account
is closed, so nothing can be credited to it again. The ledger opens one lot per account and
entry, so the moved MILES open a single lot on the target that expires with the latest of the
duplicate's open lots: no mile expires earlier than it would have, some later. Flights,
claims and tier history stay recorded under the duplicate and are shown on the target's 360°
view through ``members.merged_into_id``. The target keeps its tier; the moved qualifying
units count in its current qualification window from the merge on. A duplicate in debt passes
its debt to the target (the merge entry is then marked as a clawback for ``lms ledger
verify``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.accounts.models import Member
from lms.auth.service import AuthService
from lms.callcentre.audit import StaffContext, record
from lms.callcentre.errors import (
    MemberClosed,
    MemberNotActive,
    MemberNotLocked,
    MergedElsewhere,
    MergeFamilyPool,
    MergeIntoSelf,
    MergePendingHolds,
    MergeTargetClosed,
)
from lms.callcentre.repository import CallCentreRepository
from lms.callcentre.schemas import MemberStatusOut, MergeOut, MovedUnit, ReversalOut
from lms.clock import utcnow
from lms.db import raw_connection
from lms.family.repository import FamilyRepository
from lms.ledger.service import ALL_UNITS, Ledger, SystemAccounts
from lms.ledger.types import EntryKind, Leg, Unit
from lms.settings import Settings

MERGE_SOURCE = "merge"


class MemberOperations:
    def __init__(self, session: AsyncSession, settings: Settings, system: SystemAccounts,
                 ctx: StaffContext) -> None:
        self.repo = CallCentreRepository(session)
        self.ledger = Ledger(session, system)
        self.auth = AuthService(session, settings)
        self.ctx = ctx

    async def _member(self, card: str, *, lock: bool = False) -> Member:
        member = await self.repo.member_by_card(card)
        if member is None:
            raise MemberNotFound(f"No member with card {card}")
        if lock:
            await self.repo.lock_members([member.id])
            await self.repo.session.refresh(member)
        return member

    # -- reversal ----------------------------------------------------------------------------

    async def reverse(self, entry_id: int, reason: str) -> ReversalOut:
        entry = await self.ledger.reverse(entry_id, actor=self.ctx.actor, reason=reason)
        members = await self.repo.entry_members(entry_id)
        after = {"entryId": entry_id, "reversalEntryId": entry.id, "reason": reason}
        if members:
            for m in members:
                await record(self.repo, self.ctx, "entry.reverse", target_type="member",
                             target_id=m.card_number, after=after)
        else:
            await record(self.repo, self.ctx, "entry.reverse", target_type="entry",
                         target_id=entry_id, after=after)
        return ReversalOut(entry_id=entry.id, reverses_id=entry_id,
                           created_at=entry.created_at)

    # -- lock and unlock ---------------------------------------------------------------------

    async def set_locked(self, card: str, locked: bool, reason: str) -> MemberStatusOut:
        member = await self._member(card, lock=True)
        before = member.status
        if locked and before != "active":
            raise MemberNotActive(f"The member is {before}")
        if not locked and before != "locked":
            raise MemberNotLocked(f"The member is {before}")
        status = "locked" if locked else "active"
        await self.repo.set_status(member.id, status)
        await record(self.repo, self.ctx, "member.lock" if locked else "member.unlock",
                     target_type="member", target_id=card, before={"status": before},
                     after={"status": status, "reason": reason})
        return MemberStatusOut(card_number=card, status=status, previous_status=before)

    # -- merge -------------------------------------------------------------------------------

    async def merge(self, card: str, into_card: str, reason: str) -> MergeOut:
        duplicate = await self._member(card)
        target = await self._member(into_card)
        if duplicate.id == target.id:
            raise MergeIntoSelf()
        await self.repo.lock_members([duplicate.id, target.id])
        await self.repo.session.refresh(duplicate)
        await self.repo.session.refresh(target)
        if duplicate.status == "closed":
            if duplicate.merged_into_id == target.id:
                return await self._already_merged(duplicate, target)
            if duplicate.merged_into_id is not None:
                raise MergedElsewhere()
            raise MemberClosed()
        if target.status == "closed":
            raise MergeTargetClosed()
        await self._no_pending_holds(duplicate)
        # A pool member's miles are in the pool's account, credited by its membership row:
        # merging around it would leave the membership (and its share) to a closed member.
        if await FamilyRepository(await raw_connection(self.repo.session)
                                  ).current_membership(duplicate.id) is not None:
            raise MergeFamilyPool(field="cardNumber")
        status_before = duplicate.status

        balances = {b.unit: b for b in await self.ledger.balances(duplicate.account_id)}
        moved = [(u, balances[u].posted) for u in ALL_UNITS
                 if u in balances and balances[u].posted != 0]
        lot_expiry = await self.repo.latest_lot_expiry(duplicate.account_id)
        entry_id = None
        if moved:
            legs = [leg for u, amount in moved for leg in (
                Leg(duplicate.account_id, u, -amount), Leg(target.account_id, u, amount))]
            entry = await self.ledger.post(
                kind=EntryKind.MERGE, actor=self.ctx.actor, legs=legs,
                description=f"Miles of card {duplicate.card_number} merged into this card",
                source=MERGE_SOURCE, external_ref=duplicate.card_number,
                lot_expires_at=lot_expiry,
                details={"fromCard": duplicate.card_number, "intoCard": target.card_number,
                         "reason": reason},
                events=[("member.merged", {"memberId": duplicate.id,
                                           "intoMemberId": target.id})],
                # A duplicate in debt (a clawback took back miles it had spent) passes the
                # debt on: the target may go below zero by it, as the clawback allowed.
                debt_account=target.account_id if any(a < 0 for _, a in moved) else None)
            entry_id = entry.id
        await self.ledger.set_account_status(duplicate.account_id, "closed")
        now = utcnow()
        await self.repo.mark_merged(duplicate.id, target.id, now)
        await self.auth.revoke_all("member", duplicate.id)
        result = MergeOut(card_number=duplicate.card_number,
                          into_card_number=target.card_number, status="closed",
                          merged_at=now, entry_id=entry_id,
                          moved=[MovedUnit(unit=str(u), amount=a) for u, a in moved],
                          lot_expires_at=lot_expiry)
        after: dict[str, Any] = {
            "status": "closed", "mergedInto": target.card_number, "reason": reason,
            "entryId": entry_id, "moved": {str(u): a for u, a in moved},
            "lotExpiresAt": result.lot_expires_at}
        await record(self.repo, self.ctx, "member.merge", target_type="member",
                     target_id=duplicate.card_number,
                     before={"status": status_before,
                             "balances": {str(u): b.posted for u, b in balances.items()}},
                     after=after)
        await record(self.repo, self.ctx, "member.merge_into", target_type="member",
                     target_id=target.card_number, after=after | {
                         "mergedFrom": duplicate.card_number})
        return result

    async def _no_pending_holds(self, member: Member) -> None:
        now = utcnow()
        pending = 0
        for hold in await self.repo.pending_holds(member.account_id):
            if hold.expires_at <= now:
                # Due but not yet swept by the expiry job: reading it releases it.
                await self.ledger.get_hold(hold.id)
            else:
                pending += 1
        if pending:
            raise MergePendingHolds(f"{pending} pending hold(s) on card {member.card_number}",
                                    pendingHolds=pending)

    async def _already_merged(self, duplicate: Member, target: Member) -> MergeOut:
        """A repeated merge answers what the first one did and changes nothing."""
        entry = await self.repo.merge_entry(duplicate.card_number, target.account_id)
        moved = [] if entry is None else [
            MovedUnit(unit=u, amount=a) for u, a in sorted(
                entry["moved"], key=lambda m: ALL_UNITS.index(Unit(m[0])))]
        assert duplicate.merged_at is not None
        return MergeOut(card_number=duplicate.card_number, into_card_number=target.card_number,
                        status="closed", merged_at=duplicate.merged_at,
                        entry_id=None if entry is None else entry["id"], moved=moved,
                        lot_expires_at=None if entry is None else entry["lot_expires_at"])
