"""Helpers for gift and family tests: members with tokens, funding, the programme rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.cards import make_card_number
from lms.accrual.programme import demo_programme_path, load_file
from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import AccountKind, Actor, EntryKind, Unit
from lms.settings import Settings
from tests.factories import bearer

TEST_ACTOR = Actor("system", "tests")


@dataclass(frozen=True)
class M:
    id: int
    account_id: int
    card: str
    first_name: str
    last_name: str
    headers: dict[str, str]

    def key(self) -> dict[str, str]:
        """Headers with a fresh Idempotency-Key."""
        return self.headers | {"Idempotency-Key": uuid.uuid4().hex}


async def make_member(db: Database, system: SystemAccounts, settings: Settings, *,
                      first_name: str = "Ada", last_name: str = "Lovelace",
                      status: str = "active", timezone: str = "UTC") -> M:
    """A member inserted directly (no password hashing: tests make many) with a token."""
    async def work(session: AsyncSession) -> M:
        account_id = await Ledger(session, system).open_account(AccountKind.MEMBER)
        seq = (await session.execute(text("SELECT nextval('card_number_seq')"))).scalar_one()
        card = make_card_number("7", seq)
        member_id = (await session.execute(text(
            "INSERT INTO members (card_number, account_id, email, password_hash, first_name, "
            "last_name, status, timezone) VALUES (:card, :account, :email, 'x', :first, "
            ":last, :status, :tz) RETURNING id"),
            {"card": card, "account": account_id, "email": f"fam-{seq}@example.com",
             "first": first_name, "last": last_name, "status": status,
             "tz": timezone})).scalar_one()
        token = await AuthService(session, settings).issue_token(
            Principal("member", member_id, Role.MEMBER))
        return M(member_id, account_id, card, first_name, last_name, bearer(token.token))

    return await db.transaction(work)


async def fund(db: Database, system: SystemAccounts, account_id: int, miles: int) -> None:
    async def work(session: AsyncSession) -> None:
        await Ledger(session, system).credit(account_id, miles, kind=EntryKind.ACCRUAL,
                                             actor=TEST_ACTOR)

    await db.transaction(work)


async def miles(db: Database, system: SystemAccounts, account_id: int,
                unit: Unit = Unit.MILES) -> int:
    async def work(session: AsyncSession) -> int:
        return next(b.posted for b in await Ledger(session, system).balances(account_id)
                    if b.unit is unit)

    return await db.transaction(work)


async def set_status(db: Database, member_id: int, status: str) -> None:
    async def work(session: AsyncSession) -> None:
        await session.execute(text("UPDATE members SET status = :s WHERE id = :id"),
                              {"s": status, "id": member_id})

    await db.transaction(work)


async def load_demo_rules(db: Database) -> None:
    await load_file(db, demo_programme_path(), "tests")


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body
