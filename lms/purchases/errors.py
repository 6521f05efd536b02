"""Errors of mile and status purchases, each with a stable code."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, ValidationFailed


class PurchaseNotFound(NotFound):
    code = "purchase_not_found"
    title = "Purchase not found"


class MemberNotActive(Conflict):
    code = "member_locked"
    title = "The membership is locked or closed; it cannot buy"


class PurchasesUnavailable(Conflict):
    code = "purchases_unavailable"
    title = "The programme sells nothing of this kind at the moment"


class InvalidMilesAmount(ValidationFailed):
    code = "invalid_miles_amount"
    title = "Miles must be between the minimum and maximum, in whole steps"


class YearlyCapExceeded(Conflict):
    code = "yearly_cap_exceeded"
    title = "This purchase would exceed the miles a member may buy in a calendar year"


class StatusNotOffered(Conflict):
    code = "status_not_offered"
    title = "This tier is not offered to the member now"
