"""Errors of member consent codes, quotes, holds, redemptions and refunds (stable codes)."""

from __future__ import annotations

from lms.errors import Conflict, Forbidden, NotFound, ValidationFailed


class InvalidMemberCode(Forbidden):
    """Unknown card, wrong, expired, used or differently bound code: one answer for all, so
    that a partner without the member's code learns nothing about the card."""

    code = "invalid_member_code"
    title = "The card number and member code do not match a valid consent"


class RedemptionLocked(Forbidden):
    code = "redemption_locked"
    title = "Too many wrong member codes for this card; redemption is locked for a while"


class MemberLocked(Conflict):
    code = "member_locked"
    title = "The membership is locked and cannot redeem"


class NotPoolHead(Conflict):
    code = "not_pool_head"
    title = "Only the head of a family pool may authorise spending its miles"


class UnknownPartner(ValidationFailed):
    code = "unknown_partner"
    title = "No active partner has this code"


class RedemptionNotOffered(Conflict):
    code = "redemption_not_offered"
    title = "The partner's contract sets no value per mile, so miles cannot be redeemed there"


class CashShareTooLow(ValidationFailed):
    code = "cash_share_too_low"
    title = "The miles pay for more of the order than the contract allows"


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"
    title = "Redemption not found"


class RefundExceedsCapture(Conflict):
    code = "refund_exceeds_capture"
    title = "The refund is more than what is left of the captured miles"
