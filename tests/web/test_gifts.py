"""The portal's gift page over HTTP: terms, giving, the lists of both sides, and refusals
that change nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar

from lms.accounts.repository import MemberRepository
from lms.db import Database
from lms.gifts.service import GiftService, GiftTerms
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import EntryKind, Unit
from tests.factories import TEST_ACTOR
from tests.web.support import browser, csrf_of, sign_up


@dataclass
class WebMember:
    client: httpx.AsyncClient
    member_id: int
    account_id: int
    card: str
    last_name: str


@pytest.fixture
async def clients(app: Litestar) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with browser(app) as a, browser(app) as b:
        yield [a, b]


async def member(db: Database, client: httpx.AsyncClient, last_name: str) -> WebMember:
    fields = await sign_up(client, lastName=last_name)
    found = await db.transaction(lambda s: MemberRepository(s).by_email(fields["email"]))
    assert found is not None
    return WebMember(client, found.id, found.account_id, found.card_number, last_name)


async def fund(in_ledger: Any, account: int, miles: int) -> None:
    async def work(ledger: Ledger) -> None:
        await ledger.credit(account, miles, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            description="Flight for gifting")
    await in_ledger(work)


async def available(db: Database, system: SystemAccounts, account: int) -> int:
    balances = await db.transaction(lambda s: Ledger(s, system).balances(account))
    return next((b.available for b in balances if b.unit == Unit.MILES), 0)


async def terms(db: Database, system: SystemAccounts) -> GiftTerms:
    return await db.transaction(lambda s: GiftService(s, system).terms())


async def give(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    html = (await client.get("/gifts")).text
    key = re.search(r'name="formKey" value="([^"]+)"', html)
    assert key
    return await client.post("/gifts", data={"csrf_token": csrf_of(html),
                                             "formKey": key.group(1), **fields})


async def test_gift_moves_miles_and_both_sides_see_it(
        clients: list[httpx.AsyncClient], db: Database, system: SystemAccounts,
        in_ledger: Any) -> None:
    ada = await member(db, clients[0], "Lovelace")
    bob = await member(db, clients[1], "Müller-Núñez")
    await fund(in_ledger, ada.account_id, 20_000)
    page = await ada.client.get("/gifts")
    assert page.status_code == 200
    assert 'id="gift-terms"' in page.text and "Daily limit" in page.text
    assert "20,000" in page.text

    t = await terms(db, system)
    answer = await give(ada.client, recipientCardNumber=f" {bob.card} ",
                        recipientLastName="muller nunez", miles="2,000",
                        message="Happy birthday <b>Bob</b>")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/gifts?sent=2000&fee={t.fee(2000)}"
    assert await available(db, system, ada.account_id) == 20_000 - 2000 - t.fee(2000)
    assert await available(db, system, bob.account_id) == 2000

    done = await ada.client.get(answer.headers["location"])
    assert 'id="gift-done"' in done.text
    sent = done.text.split('id="gifts-sent"')[1]
    assert "2,000 miles" in sent and "Müller-Núñez" in sent
    assert "Happy birthday &lt;b&gt;Bob&lt;/b&gt;" in sent
    received = (await bob.client.get("/gifts")).text.split('id="gifts-received"')[1]
    assert "from Ada Lovelace" in received
    for side in (ada, bob):
        statement = await side.client.get("/statement?kind=gift")
        assert "Gift from Ada Lovelace to Ada Müller-Núñez" in statement.text


async def test_a_resent_form_gives_once(clients: list[httpx.AsyncClient], db: Database,
                                        system: SystemAccounts, in_ledger: Any) -> None:
    ada = await member(db, clients[0], "Lovelace")
    bob = await member(db, clients[1], "Hopper")
    await fund(in_ledger, ada.account_id, 10_000)
    html = (await ada.client.get("/gifts")).text
    key = re.search(r'name="formKey" value="([^"]+)"', html)
    assert key
    form = {"csrf_token": csrf_of(html), "formKey": key.group(1),
            "recipientCardNumber": bob.card, "recipientLastName": "Hopper", "miles": "1000"}
    first = await ada.client.post("/gifts", data=form)
    again = await ada.client.post("/gifts", data=form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert await available(db, system, bob.account_id) == 1000
    other = await ada.client.post("/gifts", data=form | {"miles": "1500"})
    assert other.status_code == 409
    assert "reload the page" in other.text
    assert await available(db, system, bob.account_id) == 1000


@pytest.mark.parametrize(("fields", "status", "text"), [
    ({"recipientCardNumber": "", "recipientLastName": "", "miles": ""}, 422,
     "This field is required."),
    ({"miles": "12.5"}, 422, "Enter a whole number of miles."),
    ({"miles": "-100"}, 422, "Enter a whole number of miles."),
    ({"miles": "9" * 40}, 422, "Enter a whole number of miles."),
    ({"recipientCardNumber": "<script>alert(1)</script>"}, 422, "This field is not valid."),
    ({"recipientCardNumber": "1" * 5000}, 422, "This field is not valid."),
    ({"recipientLastName": "x" * 5000}, 422, "This field is not valid."),
    ({"message": "m" * 501}, 422, "This field is not valid."),
    ({"recipientCardNumber": "99999999"}, 404,
     "No member with this card number and last name."),
    ({"recipientLastName": "Someone Else"}, 404,
     "No member with this card number and last name."),
    ({"miles": "499"}, 422, "A gift is at least"),
    ({"miles": "5000"}, 409, "You do not have enough miles for this gift and its fee."),
    ({"miles": "60000"}, 409, "daily gift limit"),
])
async def test_refusals_change_nothing(clients: list[httpx.AsyncClient], db: Database,
                                       system: SystemAccounts, in_ledger: Any,
                                       fields: dict[str, str], status: int,
                                       text: str) -> None:
    ada = await member(db, clients[0], "Lovelace")
    bob = await member(db, clients[1], "Hopper")
    await fund(in_ledger, ada.account_id, 3000)
    if fields.get("miles") == "60000":
        await fund(in_ledger, ada.account_id, 100_000)
    before = await available(db, system, ada.account_id)
    answer = await give(ada.client, **({"recipientCardNumber": bob.card,
                                        "recipientLastName": "Hopper", "miles": "1000"}
                                       | fields))
    assert answer.status_code == status, answer.text
    assert text in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert "<script>alert(1)</script>" not in answer.text
    assert await available(db, system, ada.account_id) == before
    assert await available(db, system, bob.account_id) == 0


async def test_gift_to_oneself_is_refused(clients: list[httpx.AsyncClient],
                                          db: Database, in_ledger: Any) -> None:
    ada = await member(db, clients[0], "Lovelace")
    await fund(in_ledger, ada.account_id, 3000)
    answer = await give(ada.client, recipientCardNumber=ada.card,
                        recipientLastName="Lovelace", miles="1000")
    assert answer.status_code == 422
    assert "You cannot give miles to yourself." in answer.text


async def test_gift_page_needs_sign_in_and_csrf(clients: list[httpx.AsyncClient],
                                                db: Database) -> None:
    anonymous = await clients[0].get("/gifts")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/sign-in?next=/gifts"
    ada = await member(db, clients[0], "Lovelace")
    refused = await ada.client.post("/gifts", data={"recipientCardNumber": "12345678",
                                                    "recipientLastName": "X",
                                                    "miles": "1000"})
    assert refused.status_code == 403


async def test_refusals_read_in_the_pages_language(clients: list[httpx.AsyncClient],
                                                   db: Database) -> None:
    ada = await member(db, clients[0], "Lovelace")
    html = (await ada.client.get("/gifts")).text
    await ada.client.post("/language", data={"csrf_token": csrf_of(html), "lang": "ru",
                                             "next": "/gifts"})
    answer = await give(ada.client, recipientCardNumber="", recipientLastName="Ли",
                        miles="много")
    assert answer.status_code == 422
    assert '<html lang="ru">' in answer.text
    assert "Это поле обязательно." in answer.text
    assert "Введите целое число миль." in answer.text
    assert "This field is required." not in answer.text


async def test_fee_preview_while_typing(clients: list[httpx.AsyncClient], db: Database,
                                        system: SystemAccounts) -> None:
    ada = await member(db, clients[0], "Lovelace")
    t = await terms(db, system)
    preview = await ada.client.get("/gifts/fee?miles=2%2C000",
                                   headers={"HX-Request": "true"})
    assert preview.status_code == 200
    total = f"{2000 + t.fee(2000):,}"
    assert f"You pay {total} miles: 2,000 for the gift and a fee of {t.fee(2000):,}." \
        in preview.text
    for raw in ("abc", "<script>", "1" * 30, "-5", str(t.min_miles - 1)):
        empty = await ada.client.get("/gifts/fee", params={"miles": raw})
        assert empty.status_code == 200
        assert "You pay" not in empty.text and "<script>" not in empty.text
    assert (await clients[1].get("/gifts/fee?miles=2000")).status_code == 303
