"""Tables of the web pages: server-side sessions and password-reset tokens.

Both hold only SHA-256 hashes of what the browser or the e-mail carries, like access tokens.
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
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class WebSession(Base):
    """A signed-in browser (member portal or agent console). It ends at ``expires_at`` (the
    absolute limit), after ``idle`` seconds without a request, or when revoked."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    principal_type: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    # The synchronizer token every form of this session carries (lms.web.security).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                   server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        CheckConstraint("principal_type IN ('member', 'staff')", name="principal_type"),
        Index("ix_web_sessions_principal", "principal_type", "principal_id"),
    )


class PasswordReset(Base):
    """A single-use password-reset link sent by e-mail."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_password_resets_member", "member_id", "created_at"),)
