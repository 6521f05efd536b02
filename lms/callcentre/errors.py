"""Errors of the call centre, each with a stable code (part of the API contract)."""

from __future__ import annotations

from lms.errors import Conflict, Forbidden, NotFound, ValidationFailed


class InvalidSearch(ValidationFailed):
    code = "invalid_search"
    title = "Search by exactly one of cardNumber, email, phone, name or ticketNumber"


class InvalidSearchPhone(ValidationFailed):
    code = "invalid_phone"
    title = "The phone number cannot be read; give it with its country code or a region"


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    title = "The cursor is not valid; use nextCursor from the previous page"


class ReasonCodeNotFound(NotFound):
    code = "reason_code_not_found"
    title = "Reason code not found"


class ReasonCodeExists(Conflict):
    code = "reason_code_exists"
    title = "A reason code with this code already exists"


class ReasonCodeInactive(Conflict):
    code = "reason_code_inactive"
    title = "The reason code is deactivated"


class LimitNotFound(NotFound):
    code = "adjustment_limit_not_found"
    title = "No adjustment limit for this role"


class AdjustmentNotFound(NotFound):
    code = "adjustment_not_found"
    title = "Adjustment not found"


class AdjustmentNotPending(Conflict):
    code = "adjustment_not_pending"
    title = "The adjustment is no longer waiting for approval"


class OwnAdjustment(Forbidden):
    code = "own_adjustment"
    title = "Nobody approves or rejects their own adjustment"


class MemberClosed(Conflict):
    code = "member_closed"
    title = "The membership is closed"


class MemberNotActive(Conflict):
    code = "member_not_active"
    title = "Only an active member can be locked"


class MemberNotLocked(Conflict):
    code = "member_not_locked"
    title = "The member is not locked"


class MergeIntoSelf(Conflict):
    code = "merge_into_self"
    title = "A member cannot be merged into itself"


class MergeTargetClosed(Conflict):
    code = "merge_target_closed"
    title = "The member to merge into is closed"


class MergeFamilyPool(Conflict):
    code = "merge_in_family_pool"
    title = ("The duplicate is in a family pool; it leaves the pool first (taking its share "
             "back, see docs/family-pools.md), then it can be merged")


class MergePendingHolds(Conflict):
    code = "merge_pending_holds"
    title = ("The duplicate has pending holds; capture or void them (or let them expire) "
             "before merging")


class MergedElsewhere(Conflict):
    code = "member_merged_elsewhere"
    title = "The duplicate was already merged into another member"
