"""A busy key's request numbers reserved by its check and handed out by the process
(lms.partners.key_gate): fewer statements, the same answers, a limit never passed."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text

from lms.clock import utcnow
from lms.db import Database
from lms.partners.errors import IpNotAllowed
from lms.partners.key_gate import FRESH_FOR, GATE, KeyGate
from lms.partners.service import KeyCheck
from tests.partners.support import (
    assert_problem,
    clear_of_the_minute_edge,
    iso,
    issue_key,
    make_partner,
    probe,
)


@pytest.fixture
async def partner(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    code: str = (await make_partner(client, admin))["code"]
    return code


@pytest.fixture(autouse=True)
def fresh_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate of this test's own, whose clock only the test moves."""
    monkeypatch.setattr(GATE, "reservations", {})
    monkeypatch.setattr(GATE, "clock", lambda: 0.0)


async def counted(db: Database, key: str) -> int:
    """The key's count in its current window, as the database holds it."""
    prefix = key.split("_")[1]
    async with db.engine.connect() as conn:
        count = (await conn.execute(text(
            "SELECT w.count FROM api_key_windows w JOIN api_keys k ON k.id = w.key_id"
            " WHERE k.prefix = :p"), {"p": prefix})).scalar_one_or_none()
    return int(count or 0)


async def test_a_busy_keys_check_reserves_its_next_numbers_and_a_quiet_keys_does_not(
        client: httpx.AsyncClient, db: Database, admin: dict[str, str], partner: str) -> None:
    await clear_of_the_minute_edge()
    busy = await issue_key(client, admin, partner, rateLimitPerMinute=64_000)
    for _ in range(10):
        assert (await probe(client, busy)).status_code == 404
    # One check, which reserved 64 numbers (a thousandth of the limit, at most 64): nine
    # requests were answered from the reservation.
    assert await counted(db, busy) == 64

    medium = await issue_key(client, admin, partner, rateLimitPerMinute=6_000)
    for _ in range(7):
        assert (await probe(client, medium)).status_code == 404
    assert await counted(db, medium) == 12  # two checks of six

    quiet = await issue_key(client, admin, partner, rateLimitPerMinute=1_999)
    for _ in range(3):
        assert (await probe(client, quiet)).status_code == 404
    assert await counted(db, quiet) == 3  # counted one by one, as before


async def test_reserved_numbers_never_pass_the_limit(
        client: httpx.AsyncClient, db: Database, admin: dict[str, str], partner: str) -> None:
    key = await issue_key(client, admin, partner, rateLimitPerMinute=2_000)  # reserves 2
    await clear_of_the_minute_edge()
    assert (await probe(client, key)).status_code == 404  # opens the window: 1 and 2
    async with db.engine.begin() as conn:  # as if other processes had taken 1,993 more
        await conn.execute(text(
            "UPDATE api_key_windows SET count = 1995 WHERE key_id = "
            "(SELECT id FROM api_keys WHERE prefix = :p)"), {"p": key.split("_")[1]})
    responses = [await probe(client, key) for _ in range(8)]
    # Number 2 (reserved by the first check), then 1996-1997 and 1998-1999 reserved by two
    # checks, then 2000 and 2001, of which only 2000 is within the limit; then refusals.
    assert [r.status_code for r in responses] == [404] * 6 + [429] * 2
    problem = assert_problem(responses[-1], 429, "rate_limited")
    assert problem["limit"] == 2_000
    assert 1 <= int(responses[-1].headers["Retry-After"]) <= 61


async def test_a_key_revoked_through_the_api_is_refused_at_once_despite_its_reservation(
        client: httpx.AsyncClient, admin: dict[str, str], partner: str) -> None:
    key = await issue_key(client, admin, partner)
    assert (await probe(client, key)).status_code == 404  # five numbers left in reserve
    revoked = await client.post(f"/v1/admin/api-keys/{key.split('_')[1]}/revoke",
                                headers=admin)
    assert revoked.status_code == 200
    assert_problem(await probe(client, key), 401, "unauthorized")


async def test_a_key_rotated_away_is_refused_at_once_despite_its_reservation(
        client: httpx.AsyncClient, admin: dict[str, str], partner: str) -> None:
    old = await issue_key(client, admin, partner)
    assert (await probe(client, old)).status_code == 404
    rotated = await client.post(f"/v1/admin/partners/{partner}/api-keys/rotate",
                                headers=admin, json={"overlapSeconds": 0})
    assert rotated.status_code == 201
    assert_problem(await probe(client, old), 401, "unauthorized")
    assert (await probe(client, rotated.json()["key"])).status_code == 404


async def test_a_key_changed_by_another_process_is_refused_once_its_check_is_stale(
        client: httpx.AsyncClient, db: Database, admin: dict[str, str], partner: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(GATE, "clock", lambda: clock[0])
    key = await issue_key(client, admin, partner)
    assert (await probe(client, key)).status_code == 404
    # Revoked by another process (the command line, another API worker): this one does not
    # hear of it and answers from its reservation while the check is fresh ...
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE api_keys SET status = 'revoked', revoked_at = now()"
                                " WHERE prefix = :p"), {"p": key.split("_")[1]})
    clock[0] += FRESH_FOR / 2
    assert (await probe(client, key)).status_code == 404
    # ... and asks the database again once it is not.
    clock[0] += FRESH_FOR
    assert_problem(await probe(client, key), 401, "unauthorized")


async def test_a_reservation_checks_the_whole_key_its_expiry_and_the_address(
        client: httpx.AsyncClient, db: Database, admin: dict[str, str], partner: str) -> None:
    await clear_of_the_minute_edge(10.0)
    expires = utcnow() + timedelta(seconds=5)
    key = await issue_key(client, admin, partner, rateLimitPerMinute=64_000,
                          expiresAt=iso(expires), ipAllowList=["127.0.0.0/8"])
    gate = KeyGate(clock=lambda: 0.0)
    checked = await gate.check(db, key, "127.0.0.1")
    assert checked.principal is not None and len(checked.spare) == 63
    prefix = key.split("_")[1]
    held = gate.reservations[prefix]
    moment = expires - timedelta(seconds=2)

    # Another secret under the same (public) prefix is not answered from the reservation,
    # and the database's refusal of it does not take the reservation away.
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert gate.take(forged, "127.0.0.1", moment) is None
    gate.keep(forged, KeyCheck())
    assert gate.reservations[prefix] is held

    refused = gate.take(key, "10.0.0.1", moment)
    assert refused is not None and isinstance(refused.refusal, IpNotAllowed)
    assert held.next == checked.spare.start  # a refused address takes no number

    passed = gate.take(key, "127.0.0.1", moment)
    assert passed is not None and passed.principal == checked.principal
    assert held.next == checked.spare.start + 1

    # Past its expiry the key goes back to the database (which answers 401).
    assert gate.take(key, "127.0.0.1", expires) is None
    assert prefix not in gate.reservations
