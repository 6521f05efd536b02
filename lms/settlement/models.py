"""Snapshots of closed monthly partner statements: header, totals per entry kind, lines.

All three tables are insert-only (triggers refuse UPDATE, DELETE and TRUNCATE, like the
journal's): a closed month is read from here and never changes.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base

SNAPSHOT_TABLES = ("partner_statements", "partner_statement_totals",
                   "partner_statement_lines")


class PartnerStatement(Base):
    """A closed month of one partner. Money is in minor units of ``currency``; the prices
    are the contract's at closing time, copied so the statement never changes."""

    __tablename__ = "partner_statements"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("partners.id"))
    month: Mapped[date] = mapped_column(Date)  # the first day of the month
    clearing_account_id: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    price_per_mile_milli_minor: Mapped[int] = mapped_column(BigInteger)
    value_per_mile_milli_minor: Mapped[int] = mapped_column(BigInteger)
    issued_miles: Mapped[int] = mapped_column(BigInteger)
    partner_owes: Mapped[int] = mapped_column(BigInteger)
    redeemed_miles: Mapped[int] = mapped_column(BigInteger)
    programme_owes: Mapped[int] = mapped_column(BigInteger)
    line_count: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                server_default=func.now())

    __table_args__ = (
        UniqueConstraint("partner_id", "month", name="uq_partner_statements_partner_month"),
    )


class PartnerStatementTotal(Base):
    """The sum of a closed month's postings on the clearing account for one entry kind."""

    __tablename__ = "partner_statement_totals"

    statement_id: Mapped[int] = mapped_column(BigInteger,
                                              ForeignKey("partner_statements.id"))
    kind: Mapped[str] = mapped_column(String(32))
    miles: Mapped[int] = mapped_column(BigInteger)  # signed, as posted on the clearing account
    entries: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        PrimaryKeyConstraint("statement_id", "kind", name="pk_partner_statement_totals"),
    )


class PartnerStatementLine(Base):
    """One journal entry of a closed month, as the statement shows it."""

    __tablename__ = "partner_statement_lines"

    statement_id: Mapped[int] = mapped_column(BigInteger,
                                              ForeignKey("partner_statements.id"))
    entry_id: Mapped[int] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(200))
    card_number: Mapped[str | None] = mapped_column(String(16))  # masked
    clearing_miles: Mapped[int] = mapped_column(BigInteger)
    miles: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        PrimaryKeyConstraint("statement_id", "entry_id", name="pk_partner_statement_lines"),
    )
