"""Finding members: phone however it is typed, card, e-mail, name prefixes with paging,
ticket numbers; who may search; every search in the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lms.db import Database
from lms.settings import Settings
from tests.callcentre.support import (
    add_flown_coupon,
    audit,
    new_member,
    staff_user,
    ticket,
    unique_name,
)
from tests.factories import bearer
from tests.partners.support import assert_problem


@pytest.fixture
async def agent(db: Database, settings: Settings) -> dict[str, Any]:
    return await staff_user(db, settings, "agent")


async def search(client: httpx.AsyncClient, agent: dict[str, Any],
                 **params: Any) -> httpx.Response:
    return await client.get("/v1/staff/members", params=params, headers=agent["headers"])


async def cards(client: httpx.AsyncClient, agent: dict[str, Any], **params: Any) -> list[str]:
    response = await search(client, agent, **params)
    assert response.status_code == 200, response.text
    return [h["cardNumber"] for h in response.json()["items"]]


async def test_phone_is_found_however_it_is_typed(
        client: httpx.AsyncClient, agent: dict[str, Any]) -> None:
    member = await new_member(client, phone="+44 20 7946 0958")
    # The test number is shared by other tests' members: page through until ours is there.
    spellings = [{"phone": "+44 20 7946 0958"}, {"phone": "020 7946 0958", "region": "GB"},
                 {"phone": "00442079460958"}, {"phone": "+44 (0)20-7946-0958"},
                 {"phone": "(020) 7946 0958", "region": "gb"}]
    for params in spellings:
        found: list[str] = []
        cursor = None
        while True:
            response = await search(client, agent, limit=100, **params,
                                     **({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200, (params, response.text)
            found += [h["cardNumber"] for h in response.json()["items"]]
            cursor = response.json()["nextCursor"]
            if cursor is None:
                break
        assert member["card"] in found, params

    unique = await new_member(client)
    digits = unique["member"]["phone"]  # stored in E.164
    national = "0" + digits[3:]
    assert await cards(client, agent, phone=national, region="GB") == [unique["card"]]
    assert await cards(client, agent, phone="00" + digits[1:]) == [unique["card"]]


async def test_a_national_number_needs_its_region(
        client: httpx.AsyncClient, agent: dict[str, Any]) -> None:
    assert_problem(await search(client, agent, phone="020 7946 0958"), 422, "invalid_phone")
    assert_problem(await search(client, agent, phone="not a number", region="GB"), 422,
                   "invalid_phone")


async def test_card_and_email(client: httpx.AsyncClient, agent: dict[str, Any]) -> None:
    member = await new_member(client)
    card = member["card"]
    spaced = " ".join(card[i:i + 4] for i in range(0, len(card), 4))
    response = await search(client, agent, cardNumber=spaced)
    [hit] = response.json()["items"]
    assert hit["cardNumber"] == card and hit["lastName"] == "Lovelace"
    assert hit["tier"] and hit["status"] == "active"
    email = member["member"]["email"]
    assert hit["maskedEmail"] == email[0] + "***" + email.split("@")[0][-1] + "@example.com"
    assert "email" not in hit
    assert await cards(client, agent, email=email.upper()) == [card]
    assert await cards(client, agent, cardNumber="7999999999999999") == []


async def test_name_prefixes_any_case_and_pages(
        client: httpx.AsyncClient, agent: dict[str, Any]) -> None:
    last = unique_name("Quist")
    made = [await new_member(client, firstName=first, lastName=last)
            for first in ("Ada", "Adam", "Bea", "Cy", "Adele")]
    by_card = {m["card"]: m for m in made}
    everyone = await cards(client, agent, lastName=last[:-2].lower(), limit=100)
    assert sorted(everyone) == sorted(by_card)
    # Ordered by last name, then first name.
    assert [by_card[c]["member"]["firstName"] for c in everyone] == \
        ["Ada", "Adam", "Adele", "Bea", "Cy"]
    assert len(await cards(client, agent, name=f"ad {last.upper()}")) == 3
    assert len(await cards(client, agent, name=f"{last}, Ade")) == 1
    assert len(await cards(client, agent, lastName=last, firstName="b")) == 1
    assert await cards(client, agent, name=last + "%") == []

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"lastName": last, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await search(client, agent, **params)).json()
        pages += [h["cardNumber"] for h in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == everyone

    first = unique_name("Ysolde")
    alone = await new_member(client, firstName=first, lastName="Smith")
    assert await cards(client, agent, firstName=first.lower()[:-3]) == [alone["card"]]


async def test_ticket_number_flown_or_claimed(
        client: httpx.AsyncClient, agent: dict[str, Any], db: Database) -> None:
    flown, claimed = await new_member(client), await new_member(client)
    number = ticket()
    await add_flown_coupon(db, flown["id"], number)
    response = await client.post("/v1/me/claims", headers=bearer(claimed["token"]), json={
        "ticketNumber": number, "flightNumber": "LM118", "flightDate": "2026-10-02"})
    assert response.status_code == 201, response.text
    assert sorted(await cards(client, agent, ticketNumber=number)) == \
        sorted([flown["card"], claimed["card"]])
    assert await cards(client, agent, ticketNumber=ticket()) == []


async def test_exactly_one_kind_of_search(
        client: httpx.AsyncClient, agent: dict[str, Any]) -> None:
    assert_problem(await search(client, agent), 422, "invalid_search")
    assert_problem(await search(client, agent, email="a@example.com", lastName="x"), 422,
                   "invalid_search")
    assert_problem(await search(client, agent, lastName="x", cursor="garbage"), 422,
                   "invalid_cursor")


async def test_who_may_search(client: httpx.AsyncClient, db: Database,
                              settings: Settings) -> None:
    member = await new_member(client)
    for role in ("marketer",):
        headers = (await staff_user(db, settings, role))["headers"]
        assert_problem(await client.get("/v1/staff/members", params={"cardNumber": "1"},
                                        headers=headers), 403, "forbidden")
        assert_problem(await client.get(f"/v1/staff/members/{member['card']}",
                                        headers=headers), 403, "forbidden")
    assert_problem(await client.get("/v1/staff/members", params={"cardNumber": "1"},
                                    headers=bearer(member["token"])), 403, "forbidden")
    assert_problem(await client.get("/v1/staff/members", params={"cardNumber": "1"}), 401,
                   "unauthorized")
    for role in ("supervisor", "admin"):
        headers = (await staff_user(db, settings, role))["headers"]
        response = await client.get("/v1/staff/members",
                                    params={"cardNumber": member["card"]}, headers=headers)
        assert response.status_code == 200


async def test_searches_are_audited(client: httpx.AsyncClient, agent: dict[str, Any],
                                    db: Database, settings: Settings) -> None:
    member = await new_member(client)
    await search(client, agent, email=member["member"]["email"])
    supervisor = (await staff_user(db, settings, "supervisor"))["headers"]
    [record] = await audit(client, supervisor, actor=f"staff:{agent['id']}",
                           action="member.search")
    assert record["actorRole"] == "agent" and record["ip"] == "127.0.0.1"
    assert record["after"]["by"] == "email"
    assert record["after"]["cards"] == [member["card"]]
