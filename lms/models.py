"""Every table of the loyalty core, imported in one place for Alembic and the schema test."""

from lms.accounts.models import Member
from lms.audit.models import AuditRecord
from lms.auth.models import AccessToken, LoginFailure, StaffUser
from lms.db import Base
from lms.idempotency.models import IdempotencyKey
from lms.ledger.models import Account, Balance, Hold, JournalEntry, Lot, Posting
from lms.outbox.models import OutboxEvent

metadata = Base.metadata

__all__ = [
    "AccessToken", "Account", "AuditRecord", "Balance", "Hold", "IdempotencyKey",
    "JournalEntry", "LoginFailure", "Lot", "Member", "OutboxEvent", "Posting", "StaffUser",
    "metadata",
]
