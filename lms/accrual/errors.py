"""Errors of accrual operations, each with a stable code (part of the API contract)."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, ValidationFailed


class InvalidRule(ValidationFailed):
    code = "invalid_rule"
    title = "The rule's terms are not valid for its kind"


class RuleVersionExists(Conflict):
    code = "rule_version_exists"
    title = "A version of this rule with this effective date exists; rules are never edited"


class InvalidPromotion(ValidationFailed):
    code = "invalid_promotion"
    title = "The promotion's terms are not valid"


class PromotionExists(Conflict):
    code = "promotion_exists"
    title = "A promotion with this code exists"


class PromotionNotFound(NotFound):
    code = "promotion_not_found"
    title = "Promotion not found"


class RegistrationNotOpen(Conflict):
    code = "registration_not_open"
    title = "This promotion takes no registrations (open to all, or over)"


class ImportFileInvalid(ValidationFailed):
    code = "import_file_invalid"
    title = "The file is not a flown-coupon CSV"


class CouponNotCredited(NotFound):
    code = "coupon_not_credited"
    title = "No credit for this ticket and coupon number"
