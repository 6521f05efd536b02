"""Helpers for the call-centre tests: staff of each role, members with unique phones and
funded balances, and calls to the staff API."""

from __future__ import annotations

import itertools
import random
import time
import uuid
from datetime import date
from typing import Any

import httpx
import phonenumbers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.repository import MemberRepository
from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind, Unit
from lms.settings import Settings
from tests.factories import TEST_ACTOR, bearer, register_member, unique_email

_tickets = itertools.count(int(time.time() * 1000) % 10**9)


def ticket() -> str:
    return f"0741{next(_tickets):09d}"


def london_phone() -> str:
    """A valid, most likely unused London number in international format."""
    while True:
        number = f"+44 20 7{random.randint(0, 999):03d} {random.randint(0, 9999):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def unique_name(prefix: str = "Zed") -> str:
    return prefix + uuid.uuid4().hex[:8]


async def staff_headers(db: Database, settings: Settings, role: str) -> dict[str, str]:
    return bearer((await staff_user(db, settings, role))["token"])


async def staff_user(db: Database, settings: Settings, role: str) -> dict[str, Any]:
    async def work(session: AsyncSession) -> dict[str, Any]:
        auth = AuthService(session, settings)
        staff_id = await auth.create_staff(email=unique_email(role), name=f"Test {role}",
                                           role=role, password="staff password 123")
        token = (await auth.issue_token(Principal("staff", staff_id, Role(role)))).token
        return {"id": staff_id, "token": token, "headers": bearer(token)}

    result: dict[str, Any] = await db.transaction(work)
    return result


async def new_member(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """A signed-in member with a unique phone: {"card", "id", "token", "member", ...}."""
    registered = await register_member(client, **({"phone": london_phone()} | overrides))
    member = registered["member"]
    return registered | {"card": member["cardNumber"], "id": member["id"],
                         "token": registered["accessToken"]}


async def account_of(db: Database, card: str) -> int:
    async def work(session: AsyncSession) -> int:
        member = await MemberRepository(session).by_card(card)
        assert member is not None
        return member.account_id

    result: int = await db.transaction(work)
    return result


async def fund(db: Database, system: SystemAccounts, card: str, miles: int,
               unit: Unit = Unit.MILES) -> int:
    account = await account_of(db, card)

    async def work(session: AsyncSession) -> int:
        entry = await Ledger(session, system).credit(account, miles, kind=EntryKind.ACCRUAL,
                                                     actor=TEST_ACTOR, unit=unit)
        return entry.id

    result: int = await db.transaction(work)
    return result


async def balances(client: httpx.AsyncClient, member: dict[str, Any]) -> dict[str, int]:
    response = await client.get("/v1/me/balance", headers=bearer(member["token"]))
    assert response.status_code == 200, response.text
    return {b["unit"]: b["posted"] for b in response.json()["balances"]}


async def add_flown_coupon(db: Database, member_id: int, ticket_number: str,
                           coupon: int = 1) -> None:
    """A coupon as the flights feed records it (the test needs only the row)."""
    async def work(session: AsyncSession) -> None:
        await session.execute(text("""
            INSERT INTO flown_coupons (ticket_number, coupon_number, member_id, flight_date,
                                       carrier, flight_number, origin, destination,
                                       booking_class)
            VALUES (:t, :c, :m, :d, 'LM', '117', 'LHR', 'JFK', 'Y')"""),
            {"t": ticket_number, "c": coupon, "m": member_id, "d": date(2026, 10, 1)})

    await db.transaction(work)


def idem() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def adjust(client: httpx.AsyncClient, headers: dict[str, str], card: str,
                 amount: int, direction: str = "credit", **extra: Any) -> httpx.Response:
    body = {"direction": direction, "amount": amount, "reasonCode": "GOODWILL",
            "comment": "Delayed flight"} | extra
    return await client.post(f"/v1/staff/members/{card}/adjustments", json=body,
                              headers=headers | idem())


async def audit(client: httpx.AsyncClient, headers: dict[str, str],
                **params: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/staff/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
