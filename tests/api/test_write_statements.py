"""What the hot writes send to PostgreSQL, statement by statement.

Each single-transfer write (partner accrual, gift, the redemption flow) is a fixed, short list
of round trips on the money path's bare connections (``Database.raw_transaction`` and
``Database.autocommit``), and never a SQLAlchemy session. A change that adds a round trip (a
lookup moved out of the one query for the facts, an N+1, an ORM call) changes a list here and
fails, so that it is made on purpose or not at all.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from asyncpg.connection import LoggedQuery
from sqlalchemy import event

import lms.auth.repository
import lms.family.repository
import lms.gifts.repository
import lms.idempotency.repository
import lms.ledger.repository
import lms.partners.repository
import lms.redemption.repository
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.partners.key_gate import GATE
from lms.settings import Settings
from tests.factories import bearer
from tests.family.support import fund, make_member
from tests.partners.support import (
    accrual_body,
    accrue,
    admin_headers,
    clear_of_the_minute_edge,
    issue_key,
    make_partner,
)
from tests.redemption.support import (
    capture,
    funded_member,
    hold_body,
    new_code,
    open_hold,
    redeeming_partner,
    void,
)

# The SQL constants of the repositories on these paths, by name ("CLAIM", "POST_ENTRY"):
# what a list below shows, and a statement not among them by its first words.
REPOSITORIES = (lms.auth.repository, lms.family.repository, lms.gifts.repository,
                lms.idempotency.repository, lms.ledger.repository, lms.partners.repository,
                lms.redemption.repository)
NAMES = {value: key for module in REPOSITORIES for key, value in vars(module).items()
         if key.isupper() and isinstance(value, str)}


def name(query: str) -> str:
    if query in NAMES:
        return NAMES[query]
    batch = BATCH.search(query)  # a group commit's call (lms.group_commit)
    if batch:
        return batch.group(1)
    words = " ".join(query.split())
    return words if len(words) <= 60 else words[:60] + "..."


BATCH = re.compile(r"^SELECT status_code, response_body, replayed, error_code, error_message, "
                   r"error_detail FROM (\w+_batch)\(")


class Sent:
    """The statements the money path's connections send, and the SQLAlchemy sessions'
    connections taken from the engine's pool."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.checkouts = 0

    def log(self, record: LoggedQuery) -> None:
        self.statements.append(name(record.query))

    def checkout(self, *_: Any) -> None:
        self.checkouts += 1

    async def during(self, call: Callable[[], Awaitable[httpx.Response]]
                     ) -> tuple[httpx.Response, list[str]]:
        await settle()
        self.statements.clear()
        self.checkouts = 0
        response = await call()
        await settle()
        assert self.checkouts == 0, "the request used a SQLAlchemy session"
        return response, list(self.statements)


async def settle() -> None:
    """Let the query loggers run: asyncpg calls them soon after their statement."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
async def sent(db: Database) -> AsyncIterator[Sent]:
    recorder = Sent()
    pool = await db.raw_pool()
    pool.add_query_logger(recorder.log)
    event.listen(db.engine.sync_engine, "checkout", recorder.checkout)
    try:
        yield recorder
    finally:
        event.remove(db.engine.sync_engine, "checkout", recorder.checkout)
        pool.remove_query_logger(recorder.log)


async def test_a_partner_accrual(client: httpx.AsyncClient, db: Database, settings: Settings,
                                 sent: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    # However slow this machine, the key's reservation (lms.partners.key_gate) stays fresh.
    monkeypatch.setattr(GATE, "fresh_for", 3600.0)
    admin = await admin_headers(db, settings)
    partner = await make_partner(client, admin)
    # 6,000 requests a minute (the default): each check reserves six request numbers.
    key = await issue_key(client, admin, partner["code"])
    member = await make_member(db, SystemAccounts(settings.system_account_shards), settings)
    await clear_of_the_minute_edge()  # a reservation is for its one-minute window
    # The first call of a statement on a connection also prepares it: count a later one.
    first, statements = await sent.during(
        lambda: accrue(client, key, accrual_body(member.card)))
    assert first.status_code == 201
    assert "CHECK_KEY" in statements

    response, statements = await sent.during(
        lambda: accrue(client, key, accrual_body(member.card)))
    assert response.status_code == 201, response.text
    # The key's check took one of the numbers the first check reserved, without a statement;
    # the whole unit of work is one function call (partner_accrue(), migration 0023), sent
    # with the accruals that arrive meanwhile (none here) in one call of its batch (0026).
    assert statements == ["partner_accrue_batch"]

    replay_key = "replay-" + response.json()["partnerTxnId"]
    body = accrual_body(member.card)
    assert (await accrue(client, key, body, replay_key)).status_code == 201
    replay, statements = await sent.during(lambda: accrue(client, key, body, replay_key))
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert statements == ["partner_accrue_batch"]

    for _ in range(2):  # the fifth and sixth numbers
        response, statements = await sent.during(
            lambda: accrue(client, key, accrual_body(member.card)))
        assert statements == ["partner_accrue_batch"]
    # The six numbers are used up: the next request is checked, and counted, by the database.
    response, statements = await sent.during(
        lambda: accrue(client, key, accrual_body(member.card)))
    assert response.status_code == 201, response.text
    assert statements == ["CHECK_KEY", "partner_accrue_batch"]

    # A key of fewer than 2,000 requests a minute reserves nothing: every request is checked.
    slow_key = await issue_key(client, admin, partner["code"], rateLimitPerMinute=1999)
    for _ in range(2):
        response, statements = await sent.during(
            lambda: accrue(client, slow_key, accrual_body(member.card)))
        assert response.status_code == 201, response.text
        assert statements == ["CHECK_KEY", "partner_accrue_batch"]


async def test_a_gift(client: httpx.AsyncClient, db: Database, system: SystemAccounts,
                      settings: Settings, sent: Sent) -> None:
    sender = await make_member(db, system, settings)
    recipient = await make_member(db, system, settings, last_name="Hopper")
    await fund(db, system, sender.account_id, 100_000)
    body = {"recipientCardNumber": recipient.card, "recipientLastName": "Hopper",
            "miles": 1000}

    async def give() -> httpx.Response:
        return await client.post("/v1/me/gifts", json=body, headers=sender.key())

    assert (await give()).status_code == 201
    response, statements = await sent.during(give)
    assert response.status_code == 201, response.text
    # First the member's bearer token (lms.auth), one statement; then the whole gift in
    # one call of gift_send() (migration 0024), in autocommit mode, sent with the gifts that
    # arrive meanwhile (none here) in one call of its batch (0026).
    assert len(statements) == 2
    assert statements[1:] == ["gift_send_batch"]

    replay_headers = sender.key()
    assert (await client.post("/v1/me/gifts", json=body, headers=replay_headers)
            ).status_code == 201
    replay, statements = await sent.during(
        lambda: client.post("/v1/me/gifts", json=body, headers=replay_headers))
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert statements[1:] == ["gift_send_batch"]


async def test_the_redemption_flow(client: httpx.AsyncClient, db: Database,
                                   system: SystemAccounts, settings: Settings,
                                   sent: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every request's key checked by the database, as a key's first request is (a busy
    # key's reserved numbers are shown with the accrual, above).
    monkeypatch.setattr(GATE, "fresh_for", -1.0)
    admin = await admin_headers(db, settings)
    shop = await redeeming_partner(client, admin)
    member = await funded_member(client, db, system, 50_000)

    async def hold() -> httpx.Response:
        code = await new_code(client, member)
        return await open_hold(client, shop["key"], hold_body(member["card"], code))

    first = await hold()
    assert first.status_code == 201
    assert (await capture(client, shop["key"], first.json()["id"])).status_code == 201
    other = await hold()
    assert (await void(client, shop["key"], other.json()["id"])).status_code == 200

    issued, statements = await sent.during(lambda: client.post(
        "/v1/me/redemption-codes", json={}, headers=bearer(member["accessToken"])))
    assert issued.status_code == 201, issued.text
    # The member's bearer token (lms.auth), then the code's unit of work.
    assert statements[1:] == ["BEGIN;", "ISSUE_FACTS", "ADD_CODE", "COMMIT;"]
    code = issued.json()["code"]

    quote = {"cardNumber": member["card"], "memberCode": code, "orderAmount": 10_000,
             "currency": "EUR"}
    quoted, statements = await sent.during(lambda: client.post(
        "/v1/partner/redemption-quotes", json=quote, headers=bearer(shop["key"])))
    assert quoted.status_code == 200, quoted.text
    # The code's check is one function call (member_code_check(), migration 0025).
    assert statements == ["CHECK_KEY", "CHECK_CODE", "OPEN_FACTS", "GET_BALANCES"]

    # The code's check (a wrong code counted and committed) and the hold are one function
    # call (partner_hold_open(), migration 0025).
    response, statements = await sent.during(
        lambda: open_hold(client, shop["key"], hold_body(member["card"], code)))
    assert response.status_code == 201, response.text
    assert statements == ["CHECK_KEY", "OPEN_HOLD"]

    captured, statements = await sent.during(
        lambda: capture(client, shop["key"], response.json()["id"]))
    assert captured.status_code == 201, captured.text
    # The capture's whole unit of work is one function call (partner_hold_capture(),
    # migration 0025), and so is the void's.
    assert statements == ["CHECK_KEY", "CAPTURE_HOLD"]

    voiding = await hold()
    voided, statements = await sent.during(
        lambda: void(client, shop["key"], voiding.json()["id"]))
    assert voided.status_code == 200, voided.text
    assert statements == ["CHECK_KEY", "VOID_HOLD"]
