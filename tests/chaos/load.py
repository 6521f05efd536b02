"""A load of ledger-changing requests from several concurrent clients, each request with its
own Idempotency-Key, and the proof afterwards that each was applied exactly once.

Each client is one member and runs a script of operations one after another: partner accruals,
partner holds that are captured or voided, and gifts to the next member. A request that gets
no answer (the server died, the connection broke) or a 503 is sent again with the same key and
the same body until it gets a final answer, as a well-behaved client does. What the client
learned from the answers (miles credited, captured, given) is then checked against the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.repository import MemberRepository
from lms.db import Database
from tests.factories import bearer, register_member
from tests.partners.support import accrual_body, issue_key, make_partner

PROBLEM = "application/problem+json"
VALUE_PER_MILE = 2500  # 2.5 cents a mile redeemed
OPENING_AMOUNT = 2_000_000  # minor units: 30,000 miles at 1.5 miles per EUR
REQUEST_TIMEOUT = 20.0

# One INFO line per request would bury the figures the tests print.
logging.getLogger("httpx").setLevel(logging.WARNING)


def budget(name: str, default: int) -> int:
    """A size of the fault tests: small in CI, larger under ``make chaos``."""
    return int(os.environ.get(name, default))


@dataclass
class Member:
    member_id: int
    account_id: int
    card: str
    last_name: str
    token: str
    codes: list[str] = field(default_factory=list)


@dataclass
class Programme:
    partner_id: int
    partner_code: str
    key: str
    members: list[Member]


async def build_programme(client: httpx.AsyncClient, admin: dict[str, str], db: Database,
                          members: int, holds_each: int) -> Programme:
    """A partner (accrue and redeem) and members with opening miles and redemption codes,
    made through the API of the app in this process."""
    partner = await make_partner(client, admin, valuePerMileMilliMinor=VALUE_PER_MILE)
    key = await issue_key(client, admin, partner["code"], ["accrue", "redeem"])
    people = []
    for _ in range(members):
        enrolled = await register_member(client, lastName="Chaos")
        card = enrolled["member"]["cardNumber"]

        async def ids(session: AsyncSession, card: str = card) -> tuple[int, int]:
            member = await MemberRepository(session).by_card(card)
            assert member is not None
            return member.id, member.account_id

        member_id, account_id = await db.transaction(ids)
        person = Member(member_id, account_id, card, "Chaos", enrolled["accessToken"])
        opening = await client.post(
            "/v1/partner/accruals", json=accrual_body(card, amount=OPENING_AMOUNT),
            headers=bearer(key) | {"Idempotency-Key": str(uuid.uuid4())})
        assert opening.status_code == 201, opening.text
        for _ in range(holds_each):
            code = await client.post("/v1/me/redemption-codes", headers=bearer(person.token),
                                     json={"partnerCode": partner["code"]})
            assert code.status_code == 201, code.text
            person.codes.append(code.json()["code"])
        people.append(person)
    return Programme(int(partner["id"]), partner["code"], key, people)


@dataclass
class Call:
    """One request, sent until it has a final answer, always with the same key and body."""

    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    expect: int
    answer: httpx.Response | None = None
    attempts: int = 0

    @property
    def json(self) -> Any:
        assert self.answer is not None
        return self.answer.json()


@dataclass
class Tally:
    """What the clients saw, for the assertions and the figures."""

    sent: int = 0
    no_answer: int = 0
    unavailable: int = 0
    replayed: int = 0
    calls: list[Call] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    slowest: float = 0.0

    @property
    def retried(self) -> int:
        return sum(1 for c in self.calls if c.attempts > 1)


class Faults:
    """How a client waits out a fault: the server is marked down while it is being killed and
    restarted; a client that got no answer waits for it to be back before retrying."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        self.completed = 0
        self.progress = asyncio.Condition()

    async def finished_one(self) -> None:
        async with self.progress:
            self.completed += 1
            self.progress.notify_all()

    async def wait_for_completed(self, n: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.completed >= n)


class Load:
    def __init__(self, http: httpx.AsyncClient, programme: Programme, faults: Faults, *,
                 retry_no_answer: bool, retry_unavailable: bool) -> None:
        self.http = http
        self.programme = programme
        self.faults = faults
        self.retry_no_answer = retry_no_answer
        self.retry_unavailable = retry_unavailable
        self.tally = Tally()

    async def send(self, call: Call) -> httpx.Response:
        self.tally.calls.append(call)
        while True:
            call.attempts += 1
            self.tally.sent += 1
            began = time.monotonic()
            try:
                response = await self.http.request(call.method, call.path, json=call.body,
                                                   headers=call.headers,
                                                   timeout=REQUEST_TIMEOUT)
            except httpx.TransportError as exc:
                self.tally.no_answer += 1
                if not self.retry_no_answer:
                    self.tally.unexpected.append(f"{call.kind} {call.path}: no answer "
                                                 f"({type(exc).__name__}: {exc})")
                    raise
                await self.faults.up.wait()
                continue
            finally:
                self.tally.slowest = max(self.tally.slowest, time.monotonic() - began)
            if response.status_code == 503 and self.retry_unavailable:
                self.tally.unavailable += 1
                if response.headers.get("content-type") != PROBLEM:
                    self.tally.unexpected.append(f"503 without problem+json: {response.text}")
                await asyncio.sleep(0.05 * min(call.attempts, 10))
                continue
            call.answer = response
            if response.status_code != call.expect:
                self.tally.unexpected.append(
                    f"{call.kind} {call.method} {call.path}: {response.status_code} "
                    f"{response.headers.get('content-type')} {response.text[:300]}")
            elif response.headers.get("Idempotency-Replayed") == "true":
                self.tally.replayed += 1
            await self.faults.finished_one()
            return response

    def partner(self, kind: str, path: str, body: dict[str, Any] | None,
                expect: int = 201) -> Call:
        return Call(kind, "POST", path, bearer(self.programme.key)
                    | {"Idempotency-Key": f"chaos-{uuid.uuid4()}"}, body, expect)

    async def client(self, index: int, operations: int, rng: random.Random) -> None:
        members = self.programme.members
        me = members[index]
        neighbour = members[(index + 1) % len(members)]
        codes = list(me.codes)
        for n in range(operations):
            choice = rng.random()
            if choice < 0.4 or not codes:
                body = accrual_body(me.card, amount=rng.randrange(1000, 50000),
                                    partnerTxnId=f"chaos-{uuid.uuid4().hex}")
                await self.send(self.partner("accrual", "/v1/partner/accruals", body))
            elif choice < 0.8:
                hold = self.partner("hold", "/v1/partner/holds", {
                    "cardNumber": me.card, "memberCode": codes.pop(),
                    "miles": rng.randrange(100, 400), "cashAmount": 10000, "currency": "EUR",
                    "orderReference": f"chaos-{index}-{n}-{uuid.uuid4().hex[:8]}",
                    "ttlSeconds": 900})
                answer = await self.send(hold)
                if answer.status_code != 201:
                    continue
                hold_id = answer.json()["id"]
                if rng.random() < 0.7:
                    await self.send(self.partner(
                        "capture", f"/v1/partner/holds/{hold_id}/capture",
                        {"miles": rng.randrange(1, hold.body["miles"] + 1)}))  # type: ignore[index]
                else:
                    await self.send(self.partner("void", f"/v1/partner/holds/{hold_id}/void",
                                                 None, expect=200))
            else:
                await self.send(Call("gift", "POST", "/v1/me/gifts", bearer(me.token) | {
                    "Idempotency-Key": f"chaos-{uuid.uuid4()}"}, {
                    "recipientCardNumber": neighbour.card,
                    "recipientLastName": neighbour.last_name,
                    "miles": rng.randrange(1000, 1500)}, 201))

    async def run(self, operations_each: int, seed: int) -> None:
        rng = random.Random(seed)
        await asyncio.gather(*(
            self.client(i, operations_each, random.Random(rng.random()))
            for i in range(len(self.programme.members))))


async def run_with(load: Load, operations_each: int, seed: int,
                   fault: Callable[[], Awaitable[None]]) -> None:
    """The load, and the fault beside it; the fault must have finished when the load has."""
    await asyncio.gather(load.run(operations_each, seed), fault())


async def replay_all(load: Load) -> list[str]:
    """Send every answered request once more with its key and body: each must be replayed
    with the first answer (the stored answers outlived the faults) and change nothing. The
    differences, if any."""
    wrong = []
    for call in load.tally.calls:
        assert call.answer is not None
        again = await load.http.request(call.method, call.path, json=call.body,
                                        headers=call.headers, timeout=REQUEST_TIMEOUT)
        if (again.status_code, again.headers.get("Idempotency-Replayed")) != (
                call.answer.status_code, "true") or again.json() != call.answer.json():
            wrong.append(f"{call.kind} {call.path}: {again.status_code} {again.text[:200]}")
    return wrong


async def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.engine.connect() as conn:
        return list(await conn.execute(text(sql), params))


async def assert_applied_exactly_once(db: Database, load: Load) -> None:
    """Every answered call left exactly one trace, and every member's balance is what the
    answers add up to."""
    programme = load.programme
    calls = load.tally.calls
    assert load.tally.unexpected == []
    assert all(c.answer is not None for c in calls)
    source = f"partner:{programme.partner_id}"

    accruals = [c for c in calls if c.kind == "accrual"]
    entries = Counter({r.external_ref: r.n for r in await rows(
        db, "SELECT external_ref, count(*) AS n FROM journal_entries "
            "WHERE source = :s AND kind = 'accrual' AND external_ref LIKE 'chaos-%' "
            "GROUP BY external_ref", s=source)})
    assert entries == Counter({c.body["partnerTxnId"]: 1 for c in accruals})  # type: ignore[index]

    holds = [c for c in calls if c.kind == "hold"]
    by_order = Counter({r.order_reference: r.n for r in await rows(
        db, "SELECT order_reference, count(*) AS n FROM partner_holds WHERE partner_id = :p "
            "GROUP BY order_reference", p=programme.partner_id)})
    assert by_order == Counter({c.body["orderReference"]: 1 for c in holds})  # type: ignore[index]
    captures = [c for c in calls if c.kind == "capture"]
    [[redemptions]] = await rows(db, "SELECT count(*) FROM redemptions WHERE partner_id = :p",
                                 p=programme.partner_id)
    assert redemptions == len(captures)
    gifts = [c for c in calls if c.kind == "gift"]
    ids = [m.member_id for m in programme.members]
    [[given]] = await rows(db, "SELECT count(*) FROM gifts WHERE sender_id = ANY(:ids)",
                           ids=ids)
    assert given == len(gifts)

    # The balances the answers add up to, from the opening accrual on.
    expected = {m.account_id: 0 for m in programme.members}
    by_card = {m.card: m for m in programme.members}
    by_token = {m.token: m for m in programme.members}
    for c in calls:
        if c.kind == "accrual":
            expected[by_card[c.body["cardNumber"]].account_id] += c.json["miles"]  # type: ignore[index]
        elif c.kind == "capture":
            hold = next(h for h in holds if h.json["id"] == int(c.path.split("/")[4]))
            expected[by_card[hold.body["cardNumber"]].account_id] -= c.json["miles"]  # type: ignore[index]
        elif c.kind == "gift":
            sender = by_token[c.headers["Authorization"].removeprefix("Bearer ")]
            expected[sender.account_id] -= c.json["miles"] + c.json["fee"]
            expected[by_card[c.body["recipientCardNumber"]].account_id] += c.json["miles"]  # type: ignore[index]
    opening = await rows(
        db, "SELECT e.id, p.account_id, p.amount FROM journal_entries e "
            "JOIN postings p ON p.entry_id = e.id "
            "WHERE e.source = :s AND e.external_ref NOT LIKE 'chaos-%' "
            "AND p.account_id = ANY(:a)", s=source, a=list(expected))
    for r in opening:
        expected[r.account_id] += r.amount
    balances = {r.account_id: (r.posted, r.held) for r in await rows(
        db, "SELECT account_id, posted, held FROM balances "
            "WHERE account_id = ANY(:a) AND unit = 'MILES'", a=list(expected))}
    assert balances == {a: (miles, 0) for a, miles in expected.items()}
