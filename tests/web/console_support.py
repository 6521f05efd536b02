"""Helpers of the console tests: staff in a browser-like client, members with miles."""

from __future__ import annotations

import re
from typing import Any

import httpx
from litestar import Litestar

from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind
from lms.settings import Settings
from tests.factories import TEST_ACTOR, asgi_client, register_member
from tests.web.support import STAFF_PASSWORD, account_of, create_staff, csrf_of, submit


async def staff_sign_in(client: httpx.AsyncClient, email: str,
                        password: str = STAFF_PASSWORD) -> httpx.Response:
    return await submit(client, "/console/sign-in", "/console/sign-in",
                        {"email": email, "password": password})


async def signed_in_staff(client: httpx.AsyncClient, db: Database, settings: Settings,
                          role: str) -> str:
    email = await create_staff(db, settings, role)
    response = await staff_sign_in(client, email)
    assert response.status_code == 303, response.text
    return email


async def member_with_miles(app: Litestar, db: Database, in_ledger: Any,
                            miles: int = 0, **overrides: Any) -> dict[str, Any]:
    """A member enrolled through the API ({"id", "cardNumber", "email", ...}), credited
    ``miles`` by a flight accrual."""
    async with asgi_client(app) as api:
        member: dict[str, Any] = (await register_member(api, **overrides))["member"]
    if miles:
        _, account = await account_of(db, member["email"])

        async def credit(ledger: Ledger) -> None:
            await ledger.credit(account, miles, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                                description="Flight LHR-JFK")

        await in_ledger(credit)
    return member


async def post_form(client: httpx.AsyncClient, page: str, action: str,
                    fields: dict[str, str]) -> httpx.Response:
    """POST ``fields`` to ``action`` with the CSRF token and the hidden ``formKey`` (if
    any) of ``page``, as the browser would."""
    html = (await client.get(page)).text
    data = {"csrf_token": csrf_of(html)}
    key = re.search(r'name="formKey" value="([^"]+)"', html)
    if key:
        data["formKey"] = key.group(1)
    return await client.post(action, data=data | fields)


async def available(db: Database, in_ledger: Any, email: str, unit: str = "MILES") -> int:
    _, account = await account_of(db, email)

    async def read(ledger: Ledger) -> int:
        return next(b.available for b in await ledger.balances(account) if str(b.unit) == unit)

    result: int = await in_ledger(read)
    return result
