"""Tables of the programme's earn rules and promotions.

Rules are versioned rows: a change is a new row with a later ``effective_from``, never an
update, so the rule that applied to any past flight can still be read back.
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
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class EarnRule(Base):
    """One version of a carrier chart, a booking class or a tier bonus (``body`` holds the
    terms, checked by lms.accrual.earning's structs before it is written)."""

    __tablename__ = "earn_rules"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(40))
    effective_from: Mapped[date] = mapped_column(Date)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        UniqueConstraint("kind", "key", "effective_from", name="uq_earn_rules_version"),
        CheckConstraint("kind IN ('carrier', 'booking_class', 'tier_bonus')", name="kind"),
    )


def _codes() -> Mapped[list[str]]:
    return mapped_column(ARRAY(String(8)), server_default=text("'{}'::varchar[]"))


class FlownCoupon(Base):
    """A coupon claimed for credit: the row is inserted (ON CONFLICT DO NOTHING, in key order)
    before the coupon's journal entry, in the same transaction. A concurrent batch carrying
    the same coupon waits on the row and then finds it taken: it answers "duplicate" instead
    of failing on the journal's unique reference. Also what claims match flights against."""

    __tablename__ = "flown_coupons"

    ticket_number: Mapped[str] = mapped_column(String(20))
    coupon_number: Mapped[int] = mapped_column(SmallInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    flight_date: Mapped[date] = mapped_column(Date)
    carrier: Mapped[str] = mapped_column(String(3))
    flight_number: Mapped[str] = mapped_column(String(5))
    origin: Mapped[str] = mapped_column(String(3))
    destination: Mapped[str] = mapped_column(String(3))
    booking_class: Mapped[str] = mapped_column(String(1))
    credited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                  server_default=func.now())

    __table_args__ = (
        PrimaryKeyConstraint("ticket_number", "coupon_number", name="pk_flown_coupons"),
        Index("ix_flown_coupons_member_flight_date", "member_id", "flight_date"),
    )


class Promotion(Base):
    __tablename__ = "promotions"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    bonus_percent: Mapped[int] = mapped_column(Integer, server_default="0")
    fixed_miles: Mapped[int] = mapped_column(BigInteger, server_default="0")
    carriers: Mapped[list[str]] = _codes()
    origins: Mapped[list[str]] = _codes()
    destinations: Mapped[list[str]] = _codes()
    countries: Mapped[list[str]] = _codes()
    booking_classes: Mapped[list[str]] = _codes()
    tiers: Mapped[list[str]] = mapped_column(ARRAY(String(32)),
                                             server_default=text("'{}'::varchar[]"))
    travel_from: Mapped[date | None] = mapped_column(Date)
    travel_to: Mapped[date | None] = mapped_column(Date)
    booked_from: Mapped[date | None] = mapped_column(Date)
    booked_to: Mapped[date | None] = mapped_column(Date)
    first_flight_only: Mapped[bool] = mapped_column(Boolean, server_default="false")
    requires_registration: Mapped[bool] = mapped_column(Boolean, server_default="false")
    member_cap: Mapped[int | None] = mapped_column(BigInteger)
    budget: Mapped[int | None] = mapped_column(BigInteger)
    # Miles awarded so far; with a budget, raised only under the row lock (see the service).
    used: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        # The last line of defence: no code path may spend past the budget.
        CheckConstraint("budget IS NULL OR used <= budget", name="within_budget"),
        CheckConstraint("used >= 0 AND bonus_percent >= 0 AND fixed_miles >= 0",
                        name="not_negative"),
    )


class PromotionRegistration(Base):
    __tablename__ = "promotion_registrations"

    promotion_code: Mapped[str] = mapped_column(String(32), ForeignKey("promotions.code"))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                    server_default=func.now())

    __table_args__ = (
        PrimaryKeyConstraint("promotion_code", "member_id", name="pk_promotion_registrations"),
    )


class PromotionAward(Base):
    """Miles a member got from one promotion so far, for the per-member cap."""

    __tablename__ = "promotion_awards"

    promotion_code: Mapped[str] = mapped_column(String(32), ForeignKey("promotions.code"))
    member_id: Mapped[int] = mapped_column(BigInteger)
    awarded: Mapped[int] = mapped_column(BigInteger, server_default="0")

    __table_args__ = (
        PrimaryKeyConstraint("promotion_code", "member_id", name="pk_promotion_awards"),
        CheckConstraint("awarded >= 0", name="not_negative"),
    )
