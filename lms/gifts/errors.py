"""Errors of gifting, each with a stable code (part of the API contract)."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, ValidationFailed


class RecipientNotFound(NotFound):
    # One answer for an unknown card and for a last name that does not match, so that
    # nobody can find out which card numbers exist.
    code = "gift_recipient_not_found"
    title = "No member with this card number and last name"


class RecipientNotActive(Conflict):
    code = "gift_recipient_not_active"
    title = "The recipient's membership cannot receive gifts"


class GiftToSelf(ValidationFailed):
    code = "gift_to_self"
    title = "Miles cannot be gifted to oneself"


class GiftTooSmall(ValidationFailed):
    code = "gift_too_small"
    title = "The gift is below the minimum"


class GiftLimitExceeded(Conflict):
    code = "gift_limit_exceeded"
    title = "The gift would exceed a gifting limit"



