"""A member locked by the call centre cannot buy miles (the purchase endpoint checks the
status the call centre sets); unlocked, they can, and the purchase is on the 360° view."""

from __future__ import annotations

import httpx

from lms.db import Database
from lms.settings import Settings
from tests.callcentre.support import new_member, staff_user
from tests.partners.support import assert_problem
from tests.payments.support import buy_miles


async def test_a_locked_member_cannot_buy_and_purchases_show_on_the_360_view(
        api: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    agent = await staff_user(db, settings, "agent")
    member = await new_member(api)
    url = f"/v1/staff/members/{member['card']}"
    locked = await api.post(url + "/lock", json={"reason": "Card reported stolen"},
                            headers=agent["headers"])
    assert locked.status_code == 200, locked.text
    assert_problem(await buy_miles(api, member["token"], 1000), 409, "member_locked")

    await api.post(url + "/unlock", json={"reason": "Card found"}, headers=agent["headers"])
    bought = await buy_miles(api, member["token"], 1000)
    assert bought.status_code == 201, bought.text
    view = (await api.get(url, headers=agent["headers"])).json()
    [purchase] = view["purchases"]
    assert purchase["kind"] == "miles" and purchase["miles"] == 1000
    assert purchase["status"] == "pending" and purchase["cardNumber"] == member["card"]
