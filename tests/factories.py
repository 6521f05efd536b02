"""Small factory functions for tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx

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


def asgi_client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """An HTTP client calling the app in this event loop (concurrent requests allowed)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def registration(**overrides: Any) -> dict[str, Any]:
    """A valid body for POST /v1/auth/register."""
    return {"email": unique_email(), "password": "correct horse battery",
            "firstName": "Ada", "lastName": "Lovelace", "birthDate": "1990-05-17",
            "locale": "en", "phone": "+44 20 7946 0958"} | overrides


async def register_member(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Enrol and sign in: {"member": ..., "accessToken": ..., "password": ...}."""
    body = registration(**overrides)
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    token = await client.post("/v1/auth/token",
                              json={"email": body["email"], "password": body["password"]})
    assert token.status_code == 200, token.text
    return {"member": response.json(), "accessToken": token.json()["accessToken"],
            "password": body["password"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
