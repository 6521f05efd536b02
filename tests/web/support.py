"""Helpers of the web tests: a browser-like client (cookies, forms with their CSRF token)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.repository import MemberRepository
from lms.auth.service import AuthService
from lms.db import Database
from lms.settings import Settings
from tests.factories import unique_email

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
STAFF_PASSWORD = "staff password 123"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def submit(client: httpx.AsyncClient, page: str, action: str,
                 fields: dict[str, str]) -> httpx.Response:
    """GET the page, then POST its form with the page's CSRF token, as a browser would."""
    html = (await client.get(page)).text
    return await client.post(action, data={"csrf_token": csrf_of(html), **fields})


async def sign_up(client: httpx.AsyncClient, **overrides: str) -> dict[str, str]:
    fields = {"firstName": "Ada", "lastName": "Lovelace", "email": unique_email("web"),
              "password": PASSWORD, "passwordAgain": PASSWORD} | overrides
    response = await submit(client, "/sign-up", "/sign-up", fields)
    assert response.status_code == 303, response.text
    return fields


async def account_of(db: Database, email: str) -> tuple[int, int]:
    member = await db.transaction(lambda s: MemberRepository(s).by_email(email))
    assert member is not None
    return member.id, member.account_id


async def create_staff(db: Database, settings: Settings, role: str) -> str:
    email = unique_email(role)

    async def work(session: AsyncSession) -> int:
        return await AuthService(session, settings).create_staff(
            email=email, name=f"Test {role}", role=role, password=STAFF_PASSWORD)

    await db.transaction(work)
    return email


def browser(app: Any) -> httpx.AsyncClient:
    # https: the session cookies are Secure, and a client keeps them for https only.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="https://testserver", follow_redirects=False)
