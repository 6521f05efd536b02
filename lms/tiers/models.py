"""Tables of tiers, tier history, programme policies and expiry notices.

Tiers and policies are data with effective dates: a change is a new row from a date on, so
what applied to a past decision can always be read back.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class Tier(Base):
    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer)
    status_miles_threshold: Mapped[int] = mapped_column(BigInteger)
    segments_threshold: Mapped[int] = mapped_column(Integer)
    # Wallet pass colours, CSS rgb() strings as Apple Wallet wants them.
    background_color: Mapped[str] = mapped_column(String(32))
    foreground_color: Mapped[str] = mapped_column(String(32))
    label_color: Mapped[str] = mapped_column(String(32))
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        UniqueConstraint("code", "effective_from", name="uq_tiers_code_effective_from"),
        CheckConstraint("rank >= 0", name="rank_not_negative"),
        CheckConstraint("status_miles_threshold >= 0 AND segments_threshold >= 0",
                        name="thresholds_not_negative"),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from",
                        name="effective_range"),
    )


class PolicySetting(Base):
    """A programme policy (``tier_qualification``, ``expiry_policy``, ...) from a date on."""

    __tablename__ = "policy_settings"

    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        PrimaryKeyConstraint("name", "effective_from", name="pk_policy_settings"),
    )


class TierChange(Base):
    __tablename__ = "tier_history"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger)
    from_tier: Mapped[str] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_tier_history_member_id", "member_id", "id"),
    )


class ExpiryNotice(Base):
    """One ``miles.expiring`` event per lot and expiry date: an extended lot (activity
    policy) is announced again for its new date, never twice for the same one."""

    __tablename__ = "lot_expiry_notices"

    lot_id: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    account_id: Mapped[int] = mapped_column(BigInteger)
    miles: Mapped[int] = mapped_column(BigInteger)
    notified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                  server_default=func.now())

    __table_args__ = (
        PrimaryKeyConstraint("lot_id", "expires_at", name="pk_lot_expiry_notices"),
    )
