"""The console's audit log over HTTP: who may read it, its filters (actor, member card,
action, days), their errors, and paging newest first."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal, Role
from lms.callcentre.audit import StaffContext, record
from lms.callcentre.repository import CallCentreRepository
from lms.db import Database
from lms.settings import Settings
from tests.web.console_support import member_with_miles, post_form, signed_in_staff
from tests.web.support import browser


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


def rows(html: str) -> list[str]:
    if 'id="audit"' not in html:
        return []
    body = html.split('id="audit"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


async def test_filters_by_card_action_actor_and_days(web: httpx.AsyncClient, app: Litestar,
                                                     db: Database, settings: Settings,
                                                     in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger, 100)
    card = member["cardNumber"]
    async with browser(app) as agent:
        await signed_in_staff(agent, db, settings, "agent")
        page = f"/console/members/{member['id']}"
        await post_form(agent, page, f"{page}/adjustments",
                        {"unit": "MILES", "amount": "250", "reasonCode": "GOODWILL",
                         "note": "Seat broken"})
    await signed_in_staff(web, db, settings, "supervisor")

    by_card = await web.get("/console/audit", params={"card": card})
    assert by_card.status_code == 200
    found = rows(by_card.text)
    # Newest first: the adjustment after the view of the page it was made on.
    actions = [re.search(r'<td class="mono">([^<]+)</td>', r).group(1)  # type: ignore[union-attr]
               for r in found]
    assert actions[:2] == ["adjustment.post", "member.view"]
    assert all(card in r for r in found)
    post_row = found[actions.index("adjustment.post")]
    assert "Test agent" in post_row and "(agent)" in post_row and "Seat broken" in post_row
    actor = re.search(r"staff:(\d+)", post_row)
    assert actor

    only_posts = rows((await web.get("/console/audit",
                                     params={"card": card, "action": "adjustment.post"})).text)
    assert len(only_posts) == 1
    by_actor = rows((await web.get("/console/audit", params={
        "actor": f"staff:{actor.group(1)}", "card": card})).text)
    assert len(by_actor) == len(found)
    today = datetime.now(UTC).date()
    within = rows((await web.get("/console/audit", params={
        "card": card, "from": today.isoformat(), "to": today.isoformat()})).text)
    assert len(within) == len(found)
    tomorrow = (today + timedelta(days=1)).isoformat()
    later = await web.get("/console/audit", params={"card": card, "from": tomorrow})
    assert rows(later.text) == [] and "No record matches these filters." in later.text


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-02-30"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"action": "<script>alert(1)</script>"}, "action"),
    ({"actor": "staff:abc"}, "actor"),
    ({"card": "12 34"}, "card"),
])
async def test_wrong_filters_are_shown_beside_their_field(
        web: httpx.AsyncClient, db: Database, settings: Settings,
        params: dict[str, str], field: str) -> None:
    await signed_in_staff(web, db, settings, "admin")
    response = await web.get("/console/audit", params=params)
    assert response.status_code == 422
    assert f'id="f-{field}-error"' in response.text and 'aria-invalid="true"' in response.text
    assert "<script>alert" not in response.text
    assert rows(response.text) == []


async def test_pages_newest_first_and_a_bad_cursor(web: httpx.AsyncClient, db: Database,
                                                   settings: Settings) -> None:
    card = "9" + datetime.now(UTC).strftime("%H%M%S%f")
    staff = StaffContext(Principal("staff", 1, Role.AGENT), "127.0.0.1")

    async def fill(session: AsyncSession) -> None:
        repo = CallCentreRepository(session)
        for n in range(55):
            await record(repo, staff, "member.view", target_type="member", target_id=card,
                         after={"n": n})

    await db.transaction(fill)
    await signed_in_staff(web, db, settings, "supervisor")
    first = await web.get("/console/audit", params={"card": card})
    page_one = rows(first.text)
    assert len(page_one) == 50
    assert '{"n": 54}' in page_one[0] and '{"n": 5}' in page_one[-1]
    older = re.search(r'id="older" href="([^"]+)"', first.text)
    assert older
    second = await web.get(older.group(1).replace("&amp;", "&"))
    page_two = rows(second.text)
    assert len(page_two) == 5 and '{"n": 0}' in page_two[-1]
    assert 'id="older"' not in second.text and f'href="/console/audit?card={card}"' in second.text

    bad = await web.get("/console/audit", params={"card": card, "cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert "start from the newest" in bad.text


async def test_only_supervisors_and_admins_read_it(web: httpx.AsyncClient, db: Database,
                                                   settings: Settings) -> None:
    assert (await web.get("/console/audit")).status_code == 303
    await signed_in_staff(web, db, settings, "agent")
    refused = await web.get("/console/audit")
    assert refused.status_code == 403
    assert 'href="/console/audit"' not in (await web.get("/console")).text
