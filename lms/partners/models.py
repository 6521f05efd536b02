"""Partner tables: contracts, earn rates, API keys, per-key rate counters, accruals.

Money per mile is kept as integers in thousandths of the partner currency's minor unit
("milli-minor"): 1.25 euro cents per mile is 1250. Earn rates are miles per whole currency
unit in basis points of a mile: 1.5 miles per euro is 15000.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    currency: Mapped[str] = mapped_column(String(3))
    # What the partner pays per mile it issues, in thousandths of a minor unit.
    price_per_mile_milli_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # What the programme pays per mile redeemed at the partner, same scale.
    value_per_mile_milli_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    min_cash_share_bp: Mapped[int] = mapped_column(Integer, server_default="0")
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    # The partner's clearing system account in the ledger (code partner:<id>, shard 0).
    clearing_account_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("kind IN ('shop', 'ota', 'airline', 'client')", name="kind"),
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint("price_per_mile_milli_minor >= 0 AND value_per_mile_milli_minor >= 0",
                        name="prices"),
        CheckConstraint("min_cash_share_bp BETWEEN 0 AND 10000", name="min_cash_share"),
    )


class PartnerEarnRate(Base):
    """Miles per whole currency unit for a category, in force over [effective_from,
    effective_to). Rows are added, never rewritten: a credit used the rate of its time."""

    __tablename__ = "partner_earn_rates"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("partners.id"))
    category: Mapped[str] = mapped_column(String(64))
    miles_per_unit_bp: Mapped[int] = mapped_column(BigInteger)
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effective_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("miles_per_unit_bp >= 0", name="rate"),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from",
                        name="period"),
        Index("ix_partner_earn_rates_lookup", "partner_id", "category", "effective_from"),
    )


class ApiKey(Base):
    """A partner's API key: only the SHA-256 of the whole key is kept; ``prefix`` is public
    and finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("partners.id"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    # Networks in CIDR form, checked with the ipaddress module (validated on the way in).
    ip_allow_list: Mapped[list[str] | None] = mapped_column(ARRAY(String(64)))
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, server_default="6000")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('active', 'revoked')", name="status"),
        CheckConstraint("rate_limit_per_minute > 0", name="rate_limit"),
        CheckConstraint(
            "scopes <@ ARRAY['accrue', 'redeem', 'statements', 'flights']::varchar[]",
            name="scopes"),
        Index("ix_api_keys_partner_id", "partner_id"),
    )


class ApiKeyWindow(Base):
    """The current fixed one-minute window of a key's request counter (one row per key).

    UNLOGGED (migration 0020): every partner request updates its key's row, and a logged
    commit would hold that row locked until the WAL reached the disk, so that one key's
    concurrent requests queued on an fsync each. A crash empties the table, which only
    restarts the current windows' counts.
    """

    __tablename__ = "api_key_windows"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    key_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("api_keys.id"),
                                        primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)


class PartnerAccrual(Base):
    """A partner purchase credited to a member, with what has been reversed of it so far."""

    __tablename__ = "partner_accruals"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign key (migration 0021): every concurrent accrual of a partner locked its row.
    partner_id: Mapped[int] = mapped_column(BigInteger)
    partner_txn_id: Mapped[str] = mapped_column(String(100))
    member_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    category: Mapped[str] = mapped_column(String(64))
    rate_id: Mapped[int] = mapped_column(BigInteger)
    miles: Mapped[int] = mapped_column(BigInteger)
    reversed_amount_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    reversed_miles: Mapped[int] = mapped_column(BigInteger, server_default="0")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        UniqueConstraint("partner_id", "partner_txn_id",
                         name="uq_partner_accruals_partner_txn"),
        CheckConstraint("amount_minor > 0 AND miles >= 0", name="positive"),
        CheckConstraint("reversed_amount_minor BETWEEN 0 AND amount_minor", name="reversed_amount"),
        CheckConstraint("reversed_miles BETWEEN 0 AND miles", name="reversed_miles"),
    )


class PartnerAccrualReversal(Base):
    """One (full or partial) reversal of a partner accrual."""

    __tablename__ = "partner_accrual_reversals"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    accrual_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("partner_accruals.id"))
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    miles: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200), server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (Index("ix_partner_accrual_reversals_accrual_id", "accrual_id"),)
