"""Errors the ledger can raise; each has a stable code (see lms.errors)."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, ValidationFailed


class InsufficientMiles(Conflict):
    code = "insufficient_miles"
    title = "Not enough miles available"


class UnbalancedEntry(ValidationFailed):
    code = "unbalanced_entry"
    title = "The postings of an entry must sum to zero per unit"


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"
    title = "Amounts must be positive whole numbers"


class AccountNotFound(NotFound):
    code = "account_not_found"
    title = "Account not found"


class AccountClosed(Conflict):
    code = "account_closed"
    title = "The account is closed"


class DuplicateExternalReference(Conflict):
    code = "duplicate_external_reference"
    title = "This external reference was already applied"


class HoldNotFound(NotFound):
    code = "hold_not_found"
    title = "Hold not found"


class HoldNotPending(Conflict):
    code = "hold_not_pending"
    title = "The hold is no longer pending"


class HoldExpired(Conflict):
    code = "hold_expired"
    title = "The hold has expired"


class CaptureExceedsHold(Conflict):
    code = "capture_exceeds_hold"
    title = "Cannot capture more than was held"


class EntryNotFound(NotFound):
    code = "entry_not_found"
    title = "Journal entry not found"


class AlreadyReversed(Conflict):
    code = "already_reversed"
    title = "The entry was already reversed"


class NotReversible(Conflict):
    code = "not_reversible"
    title = "This entry cannot be reversed"
