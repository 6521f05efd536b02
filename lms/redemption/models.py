"""Redemption tables: consent codes, the per-card guard against guessing, partner holds,
redemptions (captured holds) and their refunds.

The miles themselves live in the ledger (holds, journal); these rows say which partner,
member, order and cash amount each ledger hold and capture belongs to.
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
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class RedemptionCode(Base):
    """A member's one-time consent to a redemption: only an HMAC of card and code is kept."""

    __tablename__ = "redemption_codes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign keys here, in partner_holds and in redemptions (migration 0021): each row
    # names rows its transaction has just read or written, and none of them is ever deleted.
    member_id: Mapped[int] = mapped_column(BigInteger)
    code_hash: Mapped[str] = mapped_column(String(64))
    # Bound to one partner, or usable by any partner when NULL.
    partner_id: Mapped[int | None] = mapped_column(BigInteger)
    # The family pool account a pool head's code draws on; the member's own when null.
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the card's redemption was locked after wrong guesses.
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        Index("ix_redemption_codes_code_hash", "code_hash"),
        Index("ix_redemption_codes_member_id", "member_id"),
    )


class RedemptionGuard(Base):
    """Wrong codes per card number within a window, and the lock they lead to.

    Keyed by the card number as sent, whether or not such a card exists, so that an unknown
    card and a wrong code go through the same steps and answer the same way.
    """

    __tablename__ = "redemption_guards"

    card_number: Mapped[str] = mapped_column(String(16), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (CheckConstraint("failures >= 0", name="failures"),)


class PartnerHold(Base):
    """A ledger hold opened by a partner (or by a member's award booking through the internal
    airline partner); the public id of the hold is the ledger's hold id."""

    __tablename__ = "partner_holds"

    hold_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    code_id: Mapped[int | None] = mapped_column(BigInteger)
    order_reference: Mapped[str] = mapped_column(String(100))
    miles: Mapped[int] = mapped_column(BigInteger)
    cash_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # The contract's value per mile when the hold was opened (thousandths of a minor unit).
    value_per_mile_milli_minor: Mapped[int] = mapped_column(BigInteger)
    # "partner" (card and member code) or "member" (an award booking by the signed-in member)
    origin: Mapped[str] = mapped_column(String(16), server_default=text("'partner'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("miles > 0 AND cash_amount >= 0", name="amounts"),
        CheckConstraint("origin IN ('partner', 'member')", name="origin"),
        Index("ix_partner_holds_partner_order", "partner_id", "order_reference"),
        Index("ix_partner_holds_member_id", "member_id"),
    )


class Redemption(Base):
    """A captured partner hold: miles moved from the member to the partner's clearing
    account, and how many of them have been refunded."""

    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    hold_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    order_reference: Mapped[str] = mapped_column(String(100))
    miles: Mapped[int] = mapped_column(BigInteger)
    refunded_miles: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cash_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    value_per_mile_milli_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("miles > 0", name="miles"),
        CheckConstraint("refunded_miles BETWEEN 0 AND miles", name="refunded"),
        Index("ix_redemptions_partner_order", "partner_id", "order_reference"),
    )


class RedemptionRefund(Base):
    """One full or partial refund of a redemption: miles back from clearing to the member."""

    __tablename__ = "redemption_refunds"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    redemption_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("redemptions.id"))
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("journal_entries.id"))
    miles: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("miles > 0", name="miles"),
        Index("ix_redemption_refunds_redemption_id", "redemption_id"),
    )
