"""Who is calling: the principal attached to a request by the authentication middleware."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    MEMBER = "member"
    PARTNER = "partner"
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    MARKETER = "marketer"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.MARKETER, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    type: str  # "member" | "staff" | "partner"
    id: int
    role: Role
    # What a partner's API key may do (lms.auth.guards.requires_scope); empty for the others.
    scopes: frozenset[str] = frozenset()
    # The API key a partner called with, for audit; None for the others.
    key_id: int | None = None

    @property
    def key(self) -> str:
        """Stable name of this principal for idempotency keys and audit."""
        return f"{self.type}:{self.id}"
