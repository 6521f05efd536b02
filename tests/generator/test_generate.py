"""``lms demo generate``: a small population loaded into a database of its own, then checked
against the ledger's invariants, the status rules and the API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import phonenumbers
import pytest
from sqlalchemy import text

from lms.accounts.cards import is_valid_card_number
from lms.app import create_app
from lms.db import Database
from lms.generator.load import DEMO_PASSWORD, Options, Refused, Report, generate
from lms.generator.simulate import TIERS, qualified_rank
from lms.ledger.service import add_months
from lms.ledger.verify import verify
from lms.outbox.relay import ALL_TOPICS, ConsumerRegistry, relay
from lms.outbox.repository import Event
from lms.settings import Settings
from tests.conftest import drop_database, migrated_database
from tests.factories import asgi_client, bearer

MEMBERS = 300


@dataclass(frozen=True)
class Generated:
    url: str
    settings: Settings
    report: Report
    db: Database


@pytest.fixture(scope="module")
def generated_url() -> Iterator[str]:
    url = migrated_database(f"lms_test_{os.getpid()}_generated")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
async def generated(generated_url: str) -> AsyncIterator[Generated]:
    settings = Settings(database_url=generated_url, system_account_shards=4,
                        log_level="WARNING")
    report = await asyncio.to_thread(generate, generated_url, settings,
                                     Options(members=MEMBERS, seed=7), lambda _: None)
    db = Database(generated_url)
    yield Generated(generated_url, settings, report, db)
    await db.dispose()


async def rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def test_the_ledger_verifies_clean(generated: Generated) -> None:
    async with generated.db.engine.connect() as conn:
        assert [str(v) for v in await verify(conn)] == []


async def test_the_generated_history_is_not_relayed_as_miles_events(
        generated: Generated) -> None:
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    registry = ConsumerRegistry()
    registry.register(ALL_TOPICS, record)
    await relay(generated.db, registry)
    assert [e for e in seen if e.topic.startswith("miles.")] == []


async def test_counts_are_as_asked_with_about_twenty_entries_per_member(
        generated: Generated) -> None:
    [counts] = await rows(generated.db, """
        SELECT (SELECT count(*) FROM members) AS members,
               (SELECT count(*) FROM accounts WHERE kind = 'member') AS accounts,
               (SELECT count(*) FROM journal_entries) AS entries,
               (SELECT count(*) FROM holds WHERE status = 'pending') AS pending,
               (SELECT count(*) FROM holds WHERE status = 'captured') AS captured,
               (SELECT count(DISTINCT kind) FROM journal_entries) AS kinds""")
    assert counts["members"] == counts["accounts"] == MEMBERS
    assert 12 * MEMBERS <= counts["entries"] <= 30 * MEMBERS
    assert counts["entries"] == generated.report.rows["journal_entries"]
    assert counts["pending"] > 0 and counts["captured"] > 0
    assert counts["kinds"] >= 4  # accruals, redemptions, captures, expiries


async def test_tiers_agree_with_status_miles_of_the_last_twelve_months(
        generated: Generated) -> None:
    since = add_months(generated.report.now, -12)
    members = await rows(generated.db, """
        SELECT m.tier,
               COALESCE(sum(p.amount) FILTER (WHERE p.unit = 'STATUS_MILES'), 0) AS sm,
               COALESCE(sum(p.amount) FILTER (WHERE p.unit = 'SEGMENTS'), 0) AS seg
        FROM members m LEFT JOIN postings p
          ON p.account_id = m.account_id AND p.created_at >= :since
        GROUP BY m.id, m.tier""", since=since)
    for m in members:
        assert m["tier"] == TIERS[qualified_rank(m["sm"], m["seg"])][0], m
    tiers = {m["tier"] for m in members}
    assert {"BASIC", "SILVER", "GOLD"} <= tiers
    basic = sum(1 for m in members if m["tier"] == "BASIC")
    assert 0.65 * MEMBERS <= basic <= 0.92 * MEMBERS


async def test_phones_parse_and_cards_pass_their_check_digit(generated: Generated) -> None:
    members = await rows(generated.db, "SELECT card_number, phone, phone_region, email, "
                                       "locale FROM members")
    with_phone = [m for m in members if m["phone"] is not None]
    assert len(with_phone) >= 0.8 * MEMBERS
    for m in with_phone:
        number = phonenumbers.parse(m["phone"], None)
        assert phonenumbers.is_valid_number(number), m
        assert phonenumbers.region_code_for_number(number) == m["phone_region"]
        assert m["phone"] == phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164)
    assert all(is_valid_card_number(m["card_number"]) for m in members)
    assert len({m["email"] for m in members}) == MEMBERS
    assert len({m["locale"] for m in members}) >= 5


async def test_a_generated_member_signs_in_and_sees_the_sum_of_their_postings(
        generated: Generated) -> None:
    # The member with the most activity, pending hold included where there is one.
    [member] = await rows(generated.db, """
        SELECT m.id, m.email, m.account_id FROM members m
        JOIN postings p ON p.account_id = m.account_id
        WHERE m.status = 'active'
        GROUP BY m.id ORDER BY (SELECT count(*) FROM holds h WHERE h.account_id = m.account_id
                                AND h.status = 'pending') DESC, count(*) DESC LIMIT 1""")
    [sums] = await rows(generated.db, """
        SELECT COALESCE(sum(amount) FILTER (WHERE unit = 'MILES'), 0) AS miles,
               COALESCE(sum(amount) FILTER (WHERE unit = 'STATUS_MILES'), 0) AS status,
               (SELECT COALESCE(sum(amount), 0) FROM holds
                WHERE account_id = :a AND status = 'pending') AS held
        FROM postings WHERE account_id = :a""", a=member["account_id"])
    app = create_app(generated.settings, db=generated.db)
    async with asgi_client(app) as client:
        token = await client.post("/v1/auth/token",
                                  json={"email": member["email"], "password": DEMO_PASSWORD})
        assert token.status_code == 200, token.text
        balance = await client.get("/v1/me/balance",
                                   headers=bearer(token.json()["accessToken"]))
    assert balance.status_code == 200, balance.text
    by_unit = {b["unit"]: b for b in balance.json()["balances"]}
    assert by_unit["MILES"]["posted"] == sums["miles"] > 0
    assert by_unit["MILES"]["held"] == sums["held"]
    assert by_unit["STATUS_MILES"]["posted"] == sums["status"]


async def test_a_database_with_members_is_refused_unless_forced(generated: Generated) -> None:
    with pytest.raises(Refused):
        await asyncio.to_thread(generate, generated.url, generated.settings,
                                Options(members=5), lambda _: None)
    report = await asyncio.to_thread(generate, generated.url, generated.settings,
                                     Options(members=10, seed=8, force=True), lambda _: None)
    assert report.dropped_indexes == 0
    [count] = await rows(generated.db, "SELECT count(*) AS n FROM members")
    assert count["n"] == MEMBERS + 10
    async with generated.db.engine.connect() as conn:
        assert [str(v) for v in await verify(conn)] == []
