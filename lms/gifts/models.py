"""Gift tables: the rule versions (fee and limits) and one row per gift sent."""

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
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class GiftRule(Base):
    """One version of the gifting terms, in force from ``effective_from`` (UTC date) until
    the next version. Limits count the miles given (the fee is not part of them); a null
    received limit means none."""

    __tablename__ = "gift_rules"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, unique=True)
    fee_bp: Mapped[int] = mapped_column(Integer)
    fee_minimum: Mapped[int] = mapped_column(BigInteger)
    min_miles: Mapped[int] = mapped_column(BigInteger)
    daily_limit: Mapped[int] = mapped_column(BigInteger)
    yearly_limit: Mapped[int] = mapped_column(BigInteger)
    daily_received_limit: Mapped[int | None] = mapped_column(BigInteger)
    yearly_received_limit: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("fee_bp BETWEEN 0 AND 10000 AND fee_minimum >= 0 AND min_miles > 0",
                        name="fee"),
        CheckConstraint("daily_limit > 0 AND yearly_limit > 0", name="limits"),
    )


class Gift(Base):
    """A gift: ``miles`` reached the recipient, ``fee`` went from the sender to FEES, both in
    the journal entry ``entry_id``. The row is what the daily and yearly limits count."""

    __tablename__ = "gifts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign keys (migration 0021): the gift is written right after the members, terms
    # and entry it names were read or written in its transaction, and none is ever deleted.
    sender_id: Mapped[int] = mapped_column(BigInteger)
    recipient_id: Mapped[int] = mapped_column(BigInteger)
    miles: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text, server_default="")
    rule_id: Mapped[int | None] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("miles > 0 AND fee >= 0", name="amounts"),
        CheckConstraint("sender_id <> recipient_id", name="not_self"),
        Index("ix_gifts_sender_created", "sender_id", "created_at"),
        Index("ix_gifts_recipient_created", "recipient_id", "created_at"),
    )


class GiftNameKeyChar(Base):
    """A character that lms.gifts.service.name_key changes, and what it makes of it: the
    table behind the SQL function gift_name_key() (migration 0024 fills it from Python's
    unicodedata)."""

    __tablename__ = "gift_name_key_chars"

    ch: Mapped[str] = mapped_column(Text(collation="C"), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
