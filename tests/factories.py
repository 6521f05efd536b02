"""Small factory functions for tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from lms.ledger.service import Ledger
from lms.ledger.types import AccountKind, Actor, EntryKind

_seq = itertools.count()
TEST_ACTOR = Actor("system", "tests")


async def funded_account(ledger: Ledger, miles: int = 0) -> int:
    account_id = await ledger.open_account(AccountKind.MEMBER)
    if miles:
        await ledger.credit(account_id, miles, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR)
    return account_id


def unique_email(prefix: str = "member") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def register_member(client: AsyncTestClient[Any], **overrides: Any) -> dict[str, Any]:
    body = {"email": unique_email(), "password": "correct horse battery",
            "firstName": "Ada", "lastName": "Lovelace", "birthDate": "1990-05-17",
            "locale": "en", "phone": "+44 20 7946 0958"} | overrides
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    data["password"] = body["password"]
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
