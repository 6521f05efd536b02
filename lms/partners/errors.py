"""Errors of partners, API keys and partner accruals, each with a stable code."""

from __future__ import annotations

from lms.errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed


class PartnerNotFound(NotFound):
    code = "partner_not_found"
    title = "Partner not found"


class PartnerExists(Conflict):
    code = "partner_exists"
    title = "A partner with this code already exists"


class PartnerSuspended(Forbidden):
    code = "partner_suspended"
    title = "The partner is suspended"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "API key not found"


class InvalidScopes(ValidationFailed):
    code = "invalid_scopes"
    title = "Scopes must be among accrue, redeem, statements, flights"


class InvalidIpAllowList(ValidationFailed):
    code = "invalid_ip_allow_list"
    title = "The IP allow-list must hold networks in CIDR notation"


class IpNotAllowed(Forbidden):
    code = "ip_not_allowed"
    title = "The API key may not be used from this address"


class RateLimited(TooManyRequests):
    code = "rate_limited"
    title = "Too many requests for this API key; retry after the time in Retry-After"


class EarnRateOverlap(Conflict):
    code = "earn_rate_overlap"
    title = "The earn rate's period overlaps a rate already set for that category"


class InvalidEarnRate(ValidationFailed):
    code = "invalid_earn_rate"
    title = "The earn rate is not valid"


class NoEarnRate(ValidationFailed):
    code = "no_earn_rate"
    title = "The partner has no earn rate for this category at that time"


class CurrencyMismatch(ValidationFailed):
    code = "currency_mismatch"
    title = "The currency must be the partner's contract currency"


class InvalidOccurredAt(ValidationFailed):
    code = "invalid_occurred_at"
    title = "occurredAt must be within the last 365 days and not in the future"


class DuplicatePartnerTransaction(Conflict):
    code = "duplicate_partner_transaction"
    title = "This partner transaction was already credited"


class AccrualNotFound(NotFound):
    code = "accrual_not_found"
    title = "Accrual not found"


class ReversalExceedsAccrual(Conflict):
    code = "reversal_exceeds_accrual"
    title = "The reversal is more than what is left of the accrual"

