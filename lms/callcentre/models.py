"""Tables of the call centre: reason codes, limits per role, adjustments and the per-agent
daily counters that make the daily limit exact under concurrency."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class ReasonCode(Base):
    """Why an agent adjusted a balance; a managed list, deactivated rather than deleted so
    that old adjustments keep their meaning."""

    __tablename__ = "adjustment_reason_codes"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (CheckConstraint("code ~ '^[A-Z][A-Z0-9_]{1,31}$'", name="code"),)


class AdjustmentLimit(Base):
    """What a staff role may adjust on its own authority, per adjustment and per UTC day (in
    each unit). Above it, an adjustment waits for a supervisor; a role without a row has no
    authority of its own."""

    __tablename__ = "adjustment_limits"

    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    per_adjustment: Mapped[int] = mapped_column(BigInteger)
    per_day: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("per_adjustment >= 0 AND per_day >= 0", name="not_negative"),
    )


class Adjustment(Base):
    __tablename__ = "adjustments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    direction: Mapped[str] = mapped_column(String(6))
    unit: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("adjustment_reason_codes.code"))
    comment: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    # Why it waits for a supervisor: per_adjustment_limit or daily_limit.
    pending_reason: Mapped[str | None] = mapped_column(String(32))
    requested_by: Mapped[int] = mapped_column(BigInteger, ForeignKey("staff_users.id"))
    requested_role: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                   server_default=func.now())
    decided_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("staff_users.id"))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    entry_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("direction IN ('credit', 'debit')", name="direction"),
        CheckConstraint("unit IN ('MILES', 'STATUS_MILES')", name="unit"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('posted', 'pending_approval', 'rejected')", name="status"),
        CheckConstraint("(status = 'posted') = (entry_id IS NOT NULL)", name="posted_entry"),
        Index("ix_adjustments_pending", "id",
              postgresql_where=text("status = 'pending_approval'")),
        Index("ix_adjustments_member_id", "member_id", "id"),
        Index("ix_adjustments_requested_by", "requested_by", "id"),
    )


class AdjustmentDay(Base):
    """What one staff user adjusted on their own authority on one UTC day, per unit. Raised by
    one conditional UPDATE, so concurrent adjustments queue on this row and the sum never
    passes the limit."""

    __tablename__ = "adjustment_days"

    staff_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("staff_users.id"))
    day: Mapped[date] = mapped_column(Date)
    unit: Mapped[str] = mapped_column(String(16))
    used: Mapped[int] = mapped_column(BigInteger, server_default="0")

    __table_args__ = (
        PrimaryKeyConstraint("staff_id", "day", "unit", name="pk_adjustment_days"),
    )
