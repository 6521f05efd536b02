"""Ledger tables. Journal entries and postings are insert-only, enforced by triggers
(see the migration); balances, lots and holds are the mutable projections kept in step with
them inside the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from lms.db import Base

# Tables whose rows are never updated or deleted; triggers in the database refuse it.
APPEND_ONLY_TABLES = ("journal_entries", "postings", "audit_log")


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # System accounts: code + shard ("issuance", 3). Member/pool accounts: no code.
    code: Mapped[str | None] = mapped_column(String(64))
    shard: Mapped[int | None] = mapped_column(Integer)
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        UniqueConstraint("code", "shard", name="uq_accounts_code_shard"),
        CheckConstraint("kind IN ('member', 'pool', 'system')", name="kind"),
        CheckConstraint("(kind = 'system') = (code IS NOT NULL)", name="system_has_code"),
        CheckConstraint("allow_negative = (kind = 'system')", name="only_system_negative"),
        # SystemAccounts.load reads these few rows among millions (migration 0027).
        Index("ix_accounts_system", "code", "shard", postgresql_where=text("kind = 'system'")),
    )


class Balance(Base):
    __tablename__ = "balances"

    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    unit: Mapped[str] = mapped_column(String(16))
    posted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    held: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Copied from the account so the check below needs no join.
    allow_negative: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        PrimaryKeyConstraint("account_id", "unit", name="pk_balances"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("unit IN ('MILES', 'STATUS_MILES', 'SEGMENTS')", name="unit"),
        # Room on each page for HOT updates: every posting rewrites its balance rows.
        {"postgresql_with": {"fillfactor": "80"}},
    )


class Xid8(UserDefinedType[str]):
    """PostgreSQL's 64-bit transaction id; read as text (``xid::text``) where it is read."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


# So that reflection (Alembic's comparison of models and migrations) knows the type too.
ischema_names["xid8"] = Xid8

class JournalEntry(Base):
    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, server_default="")
    # (source, external_ref) identifies the outside fact an entry records, e.g. a ticket coupon.
    source: Mapped[str | None] = mapped_column(String(64))
    external_ref: Mapped[str | None] = mapped_column(String(200))
    reverses_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("journal_entries.id"))
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The transaction that wrote the entry: the relay reads the journal as the feed of miles
    # events in (xid, id) order (lms/outbox/feed.py). Null for entries written before 0018,
    # whose events went through the outbox table.
    xid: Mapped[str | None] = mapped_column(Xid8(), server_default=text("pg_current_xact_id()"))

    __table_args__ = (
        Index("uq_journal_entries_source_ref", "source", "external_ref", unique=True,
              postgresql_where=text("external_ref IS NOT NULL")),
        Index("uq_journal_entries_reverses_id", "reverses_id", unique=True,
              postgresql_where=text("reverses_id IS NOT NULL")),
        Index("ix_journal_entries_hold_id", "hold_id",
              postgresql_where=text("hold_id IS NOT NULL")),
        Index("ix_journal_entries_xid", "xid", "id", postgresql_where=text("xid IS NOT NULL")),
    )


class Posting(Base):
    """One leg of an entry.

    No foreign keys here or on lots: each would cost the hot path a lookup and a row lock on
    the parent per row. Their only writer, ledger_post(), locks the accounts' balance rows
    (which do reference accounts) first, and ``lms ledger verify`` checks the references.
    """

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BigInteger, Identity())
    entry_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The account's posted balance in this unit right after this posting: statements read it
    # instead of summing history.
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        # Keyed by entry first: every reader of an entry's legs (reversals, verify,
        # settlement) looks them up by entry, and nothing looks a posting up by id alone,
        # so one index serves as both key and entry lookup (each index is a write per leg).
        PrimaryKeyConstraint("entry_id", "id", name="pk_postings"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_postings_account_unit_id", "account_id", "unit", "id"),
    )


class Lot(Base):
    """A credit of MILES to a member or pool account, consumed oldest-expiry first."""

    __tablename__ = "lots"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_range"),
        CheckConstraint("amount > 0", name="amount_positive"),
        # Not partial on remaining > 0: an index that mentions ``remaining`` would make every
        # consumption a non-HOT update with new entries in all of the table's indexes.
        Index("ix_lots_account_expiry", "account_id", "expires_at", "id"),
        Index("ix_lots_expires_at", "expires_at"),
        {"postgresql_with": {"fillfactor": "80"}},
    )


class Hold(Base):
    """Miles reserved on an account until captured, voided or expired."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    unit: Mapped[str] = mapped_column(String(16), server_default="MILES")
    amount: Mapped[int] = mapped_column(BigInteger)
    captured: Mapped[int] = mapped_column(BigInteger, server_default="0")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(200))
    entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("journal_entries.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("captured >= 0 AND captured <= amount", name="captured_range"),
        CheckConstraint("status IN ('pending', 'captured', 'voided', 'expired')", name="status"),
        Index("ix_holds_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),
        Index("ix_holds_account_id", "account_id"),
    )
