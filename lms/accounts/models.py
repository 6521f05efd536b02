"""Member tables. Attributes that marketers target are plain indexed columns (DESIGN §7)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    card_number: Mapped[str] = mapped_column(String(16), unique=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20))
    phone_region: Mapped[str | None] = mapped_column(String(2))
    birth_date: Mapped[date | None] = mapped_column(Date)
    locale: Mapped[str] = mapped_column(String(16), server_default="en")
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    tier: Mapped[str] = mapped_column(String(32), server_default="BASIC")
    # End of the qualification period of ``tier``; NULL for the base tier (see lms.tiers).
    tier_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                server_default=func.now())
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A duplicate merged by the call centre (status closed) names the member it became.
    merged_into_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("members.id"))
    merged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('active', 'locked', 'closed')", name="status"),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        Index("ix_members_phone", "phone"),
        Index("ix_members_name", "last_name", "first_name"),
        Index("ix_members_tier", "tier"),
        Index("ix_members_joined_at", "joined_at"),
        Index("ix_members_birth_date", "birth_date"),
        # Prefix search by name (call centre) over millions of members. Migration 0010 builds
        # these with COLLATE "C" on both expressions, so that LIKE 'prefix%' is an index range
        # and the index order is the result order; SQLAlchemy's reflection does not see an
        # index expression's collation, so it is left out here for the schema comparison.
        Index("ix_members_last_name_lower", text("lower(last_name::text)"),
              text("lower(first_name::text)"), "id"),
        Index("ix_members_first_name_lower", text("lower(first_name::text)"),
              text("lower(last_name::text)"), "id"),
        Index("ix_members_merged_into_id", "merged_into_id",
              postgresql_where=text("merged_into_id IS NOT NULL")),
        # Every credited flight moves last_activity_at: room for HOT updates, and no index on
        # it, keep that from rewriting the entries of all the table's indexes.
        {"postgresql_with": {"fillfactor": "85"}},
    )
