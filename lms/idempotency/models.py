"""Stored idempotency keys: one row per (principal, key) with the first answer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, PrimaryKeyConstraint, String, func
from sqlalchemy.orm import Mapped, mapped_column

from lms.db import Base


class IdempotencyKey(Base):
    """A mutating request's key per principal with the answer it got, for replays."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),)
