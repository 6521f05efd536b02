"""Errors of family pools and of member operations shared with gifting, each with a stable
code (part of the API contract)."""

from __future__ import annotations

from lms.errors import Conflict, Forbidden, NotFound


class MemberLocked(Forbidden):
    code = "member_locked"
    title = "The membership is locked or closed; this operation is not allowed"


class AlreadyInPool(Conflict):
    code = "already_in_pool"
    title = "The member already belongs to a family pool"


class NotInPool(NotFound):
    code = "not_in_pool"
    title = "The member does not belong to a family pool"


class NotPoolHead(Forbidden):
    code = "not_pool_head"
    title = "Only the head of the pool may do this"


class HeadCannotLeave(Conflict):
    code = "head_cannot_leave"
    title = "The head cannot leave the pool; dissolve it instead"


class CoolingOff(Conflict):
    code = "family_cooling_off"
    title = "The member left a pool recently and cannot create or join one yet"


class PoolFull(Conflict):
    code = "pool_full"
    title = "The pool has reached its maximum number of members"


class InvitationNotFound(NotFound):
    code = "invitation_not_found"
    title = "Invitation not found"


class InvitationNotPending(Conflict):
    code = "invitation_not_pending"
    title = "The invitation was already answered, cancelled or has expired"


class AlreadyInvited(Conflict):
    code = "already_invited"
    title = "This member already has a pending invitation to the pool"


class InviteeNotFound(NotFound):
    code = "invitee_not_found"
    title = "No active member with this card number can be invited"


class PoolMemberNotFound(NotFound):
    code = "pool_member_not_found"
    title = "This member is not in the pool"


class PoolHasHolds(Conflict):
    code = "pool_has_holds"
    title = "The pool has pending holds; capture or void them first"
