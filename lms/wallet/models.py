"""Wallet tables: one pass per member, its authentication tokens, device registrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class WalletPass(Base):
    """A member's card in Apple and Google Wallet. ``updated_at`` is what the PassKit web
    service compares tags and ``If-Modified-Since`` with; ``sync_due_at`` says that devices
    and Google are owed an update (pushes are coalesced per pass, see lms.wallet.sync)."""

    __tablename__ = "wallet_passes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"), unique=True)
    serial_number: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    sync_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # Set once a Google save link was issued: from then on the loyalty object is kept current.
    google_issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_wallet_passes_sync_due_at", "sync_due_at",
              postgresql_where=text("sync_due_at IS NOT NULL")),
    )


class WalletPassToken(Base):
    """An authentication token embedded in a downloaded pass, kept only as its SHA-256.
    Each download gets a token of its own, so a pass on an older phone keeps working."""

    __tablename__ = "wallet_pass_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    pass_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("wallet_passes.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (Index("ix_wallet_pass_tokens_pass_id", "pass_id"),)


class WalletRegistration(Base):
    """A device that asked to be told when a pass changes (PassKit web service)."""

    __tablename__ = "wallet_registrations"

    device_library_identifier: Mapped[str] = mapped_column(String(128))
    pass_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("wallet_passes.id"))
    push_token: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        PrimaryKeyConstraint("device_library_identifier", "pass_id",
                             name="pk_wallet_registrations"),
        Index("ix_wallet_registrations_pass_id", "pass_id"),
        Index("ix_wallet_registrations_push_token", "push_token"),
    )
