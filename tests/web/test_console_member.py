"""The console's 360° member page over HTTP: what it shows, that each view is audited, and
locking and unlocking (with the errors of the reason field, and which member states allow
which)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from lms.db import Database
from lms.settings import Settings
from tests.web.console_support import member_with_miles, post_form, signed_in_staff
from tests.web.support import browser


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


async def test_the_360_page_shows_card_miles_person_and_trail(
        web: httpx.AsyncClient, app: Litestar, db: Database, settings: Settings,
        in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger, 4321, firstName="Grace",
                                     lastName="Hopper")
    await signed_in_staff(web, db, settings, "agent")
    first = await web.get(f"/console/members/{member['id']}")
    assert first.status_code == 200
    html = (await web.get(f"/console/members/{member['id']}")).text
    assert "Grace Hopper" in html and member["cardNumber"] in html
    assert member["email"] in html and "+442079460958" in html
    balances = html.split('id="balances"', 1)[1].split("</table>", 1)[0]
    assert "Award miles" in balances and "4,321" in balances
    assert "Flight LHR-JFK" in html and "+4,321" in html
    assert "Not in a family pool." in html and "No flights credited." in html
    # The reason codes of the adjustment form are the active ones of the call centre.
    assert '<option value="GOODWILL">' in html
    assert "Up to 5,000 per adjustment posts at once" in html
    # The first view is in the member's audit trail shown by the second.
    trail = html.split('id="trail"', 1)[1].split("</ul>", 1)[0]
    assert "member.view" in trail and "Test agent" in trail


async def test_the_page_in_russian_and_unknown_members(
        web: httpx.AsyncClient, app: Litestar, db: Database, settings: Settings,
        in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger, 1500)
    await signed_in_staff(web, db, settings, "supervisor")
    ru = await web.get(f"/console/members/{member['id']}",
                       headers={"Accept-Language": "ru"})
    assert '<html lang="ru">' in ru.text
    assert "Карта и мили" in ru.text and "Изменить баланс" in ru.text
    assert "1\xa0500" in ru.text
    assert (await web.get("/console/members/999999999")).status_code == 404
    assert (await web.get("/console/members/0")).status_code == 400


async def test_lock_and_unlock_with_a_reason(web: httpx.AsyncClient, app: Litestar,
                                             db: Database, settings: Settings,
                                             in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger)
    await signed_in_staff(web, db, settings, "agent")
    page = f"/console/members/{member['id']}"

    missing = await post_form(web, page, f"{page}/lock", {"reason": "   "})
    assert missing.status_code == 422
    assert 'id="f-reason-error"' in missing.text and "This field is required." in missing.text
    hostile = await post_form(web, page, f"{page}/lock", {"reason": "stop\x00now"})
    assert hostile.status_code == 422
    assert "This field is not valid." in hostile.text
    too_long = await post_form(web, page, f"{page}/lock", {"reason": "x" * 1001})
    assert too_long.status_code == 422
    assert "Lock the member" in (await web.get(page)).text  # nothing changed

    locked = await post_form(web, page, f"{page}/lock",
                             {"reason": "Suspected account takeover <b>"})
    assert locked.status_code == 303
    assert locked.headers["location"] == f"{page}?done=locked"
    html = (await web.get(locked.headers["location"])).text
    assert "The member is locked." in html and "Member status: Locked." in html
    assert f'action="{page}/unlock"' in html
    trail = html.split('id="trail"', 1)[1]
    assert "member.lock" in trail

    again = await post_form(web, page, f"{page}/lock", {"reason": "twice"})
    assert again.status_code == 409
    assert "Only an active member can be locked." in again.text

    unlocked = await post_form(web, page, f"{page}/unlock", {"reason": "Customer verified"})
    assert unlocked.status_code == 303
    assert "The member is unlocked." in (await web.get(unlocked.headers["location"])).text
    not_locked = await post_form(web, page, f"{page}/unlock", {"reason": "again"})
    assert not_locked.status_code == 409
    assert "The member is not locked." in not_locked.text


async def test_member_page_forms_need_csrf_and_a_staff_session(
        web: httpx.AsyncClient, app: Litestar, db: Database, settings: Settings,
        in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger)
    page = f"/console/members/{member['id']}"
    assert (await web.get(page)).status_code == 303
    await signed_in_staff(web, db, settings, "agent")
    refused = await web.post(f"{page}/lock", data={"reason": "no token"})
    assert refused.status_code == 403
    assert "Lock the member" in (await web.get(page)).text
