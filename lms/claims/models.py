"""The claims table: one row per missing flight a member asked for."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Identity,
    Index,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class Claim(Base):
    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger)
    ticket_number: Mapped[str] = mapped_column(String(13))
    flight_number: Mapped[str] = mapped_column(String(8))
    flight_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("member_id", "ticket_number", "flight_number", "flight_date",
                         name="uq_claims_member_flight"),
        CheckConstraint("status IN ('pending', 'credited', 'rejected')", name="status"),
        Index("ix_claims_pending", "flight_date", "id",
              postgresql_where=text("status = 'pending'")),
        Index("ix_claims_ticket_number", "ticket_number"),
    )
