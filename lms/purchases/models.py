"""Purchase rules (versions with effective dates) and purchases of miles or status.

Money is integer minor units with an ISO 4217 code.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class PurchaseRule(Base):
    """One version of the rules of mile purchases (kind ``miles``: limits, price bands,
    yearly cap) or of status purchases (kind ``status``: distance, prices), in force from
    ``effective_from`` until the next version. Loaded from the programme file."""

    __tablename__ = "purchase_rules"

    kind: Mapped[str] = mapped_column(String(16))
    effective_from: Mapped[date] = mapped_column(Date)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        PrimaryKeyConstraint("kind", "effective_from", name="pk_purchase_rules"),
        CheckConstraint("kind IN ('miles', 'status')", name="kind"),
    )


class Purchase(Base):
    __tablename__ = "purchases"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Ours, sent to the provider and echoed in its webhooks; also the ledger's external ref.
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    miles: Mapped[int | None] = mapped_column(BigInteger)
    tier: Mapped[str | None] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    # The calendar year (UTC) whose cap a mile purchase counts against.
    cap_year: Mapped[int] = mapped_column(Integer)
    provider_payment_id: Mapped[str] = mapped_column(String(100), unique=True)
    payment_url: Mapped[str] = mapped_column(String(1000))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    # A status purchase: the tier's validity it granted.
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Money was taken that bought nothing (mismatch, late payment, tier already held above).
    refund_due: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    note: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        CheckConstraint("kind IN ('miles', 'status')", name="kind"),
        CheckConstraint("status IN ('pending', 'completed', 'canceled', 'expired', "
                        "'rejected')", name="status"),
        CheckConstraint("(kind = 'miles' AND miles > 0 AND tier IS NULL) OR "
                        "(kind = 'status' AND miles IS NULL AND tier IS NOT NULL)",
                        name="what"),
        CheckConstraint("amount_minor > 0", name="amount"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        Index("ix_purchases_member", "member_id", "kind", "id"),
        Index("ix_purchases_pending_expiry", "expires_at",
              postgresql_where=text("status = 'pending'")),
    )
