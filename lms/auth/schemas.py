"""API shapes of sign-in and staff users (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec


class TokenRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TokenResponse(msgspec.Struct, rename="camel"):
    access_token: str
    token_type: str
    expires_at: datetime


class StaffOut(msgspec.Struct, rename="camel"):
    id: int
    email: str
    name: str
    role: str
