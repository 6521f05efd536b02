"""Family pool tables: the rule versions, pools, memberships (with each member's
contribution) and invitations."""

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
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class FamilyRule(Base):
    """One version of the pool terms, in force from ``effective_from`` (UTC date)."""

    __tablename__ = "family_rules"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, unique=True)
    max_members: Mapped[int] = mapped_column(Integer)
    cooling_off_days: Mapped[int] = mapped_column(Integer)
    invitation_days: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("max_members >= 2 AND cooling_off_days >= 0 AND invitation_days > 0",
                        name="terms"),
    )


class FamilyPool(Base):
    __tablename__ = "family_pools"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The pool's ledger account (kind pool); closed when the pool is dissolved.
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), unique=True)
    head_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    dissolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('active', 'dissolved')", name="status"),
    )


class FamilyMember(Base):
    """A membership. ``contributed`` is every MILES credit routed to the pool while it
    lasted; ``paid_out`` what the member took on leaving, removal or dissolution."""

    __tablename__ = "family_members"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("family_pools.id"))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    role: Mapped[str] = mapped_column(String(16))
    contributed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    paid_out: Mapped[int] = mapped_column(BigInteger, server_default="0")
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                server_default=func.now())
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    left_reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint("role IN ('head', 'member')", name="role"),
        CheckConstraint("left_reason IN ('left', 'removed', 'dissolved')", name="left_reason"),
        CheckConstraint("contributed >= 0 AND paid_out >= 0", name="amounts"),
        # One pool per member: at most one membership that has not ended.
        Index("uq_family_members_current", "member_id", unique=True,
              postgresql_where=text("left_at IS NULL")),
        Index("ix_family_members_pool", "pool_id"),
    )


class FamilyInvitation(Base):
    __tablename__ = "family_invitations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("family_pools.id"))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    invited_by: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'accepted', 'declined', 'cancelled')",
                        name="status"),
        Index("uq_family_invitations_pending", "pool_id", "member_id", unique=True,
              postgresql_where=text("status = 'pending'")),
        Index("ix_family_invitations_member", "member_id", "status"),
    )
