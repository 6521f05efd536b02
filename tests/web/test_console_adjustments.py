"""Adjustments in the console over HTTP: the form on the member page (within the limit it
posts, above it it waits), its errors for missing, wrong and hostile values (nothing
changes), a form sent twice, and the supervisors' approval queue with its role rules."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal, Role
from lms.callcentre.adjustments import AdjustmentService
from lms.callcentre.audit import StaffContext
from lms.callcentre.operations import MemberOperations
from lms.callcentre.schemas import ReasonCodeCreate
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.web.console_support import available, member_with_miles, post_form, signed_in_staff
from tests.web.support import browser, csrf_of

ADJUST = {"unit": "MILES", "reasonCode": "GOODWILL", "note": "Delayed flight LM123"}


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


@pytest.fixture
async def supervisor_web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


def adjustments_table(html: str) -> str:
    return html.split('id="adjustments"', 1)[1].split("</table>", 1)[0] \
        if 'id="adjustments"' in html else ""


async def adjust(web: httpx.AsyncClient, member: dict[str, Any],
                 **fields: str) -> httpx.Response:
    page = f"/console/members/{member['id']}"
    return await post_form(web, page, f"{page}/adjustments", ADJUST | fields)


async def test_within_the_limit_it_posts_at_once(web: httpx.AsyncClient, app: Litestar,
                                                 db: Database, settings: Settings,
                                                 in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger, 2000)
    await signed_in_staff(web, db, settings, "agent")
    credited = await adjust(web, member, amount="1,500")
    assert credited.status_code == 303
    assert credited.headers["location"] == f"/console/members/{member['id']}?done=posted"
    assert await available(db, in_ledger, member["email"]) == 3500
    debited = await adjust(web, member, amount=" -500 ", reasonCode="INCORRECT_CREDIT")
    assert debited.status_code == 303
    assert await available(db, in_ledger, member["email"]) == 3000
    status = await adjust(web, member, amount="700", unit="STATUS_MILES")
    assert status.status_code == 303
    assert await available(db, in_ledger, member["email"], "STATUS_MILES") == 700
    html = (await web.get(debited.headers["location"])).text
    assert "The adjustment is posted." in html
    table = adjustments_table(html)
    assert table.count("Posted") == 3 and "INCORRECT_CREDIT" in table and "\u2212500" in table


async def test_above_the_limit_it_waits_for_a_supervisor(
        web: httpx.AsyncClient, supervisor_web: httpx.AsyncClient, app: Litestar,
        db: Database, settings: Settings, in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger, 100, firstName="Hedy",
                                     lastName="Lamarr")
    await signed_in_staff(web, db, settings, "agent")
    queued = await adjust(web, member, amount="6000", note="Lost bag <script>x</script>")
    assert queued.status_code == 303
    assert queued.headers["location"].endswith("?done=pending")
    html = (await web.get(queued.headers["location"])).text
    assert "it waits for a supervisor" in html
    assert "Waiting for a supervisor (above the limit per adjustment)" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert await available(db, in_ledger, member["email"]) == 100

    # Agents do not see the queue and cannot decide.
    assert (await web.get("/console/approvals")).status_code == 403
    assert "/console/approvals" not in html

    await signed_in_staff(supervisor_web, db, settings, "supervisor")
    queue = (await supervisor_web.get("/console/approvals")).text
    found = re.search(r'id="adjustment-(\d+)"', queue)
    assert found and "Hedy Lamarr" in queue and "+6,000" in queue
    adjustment_id = found.group(1)
    refused = await web.post(f"/console/approvals/{adjustment_id}",
                             data={"csrf_token": csrf_of(html), "decision": "approve",
                                   "note": "mine"})
    assert refused.status_code == 403
    assert await available(db, in_ledger, member["email"]) == 100

    no_note = await post_form(supervisor_web, "/console/approvals",
                              f"/console/approvals/{adjustment_id}",
                              {"decision": "approve", "note": ""})
    assert no_note.status_code == 422
    assert f'id="note-{adjustment_id}-error"' in no_note.text
    wrong = await post_form(supervisor_web, "/console/approvals",
                            f"/console/approvals/{adjustment_id}",
                            {"decision": "delete", "note": "x"})
    assert wrong.status_code == 422
    assert await available(db, in_ledger, member["email"]) == 100

    approved = await post_form(supervisor_web, "/console/approvals",
                               f"/console/approvals/{adjustment_id}",
                               {"decision": "approve", "note": "Checked the PIR"})
    assert approved.status_code == 303
    assert approved.headers["location"] == "/console/approvals?done=approved"
    after = (await supervisor_web.get(approved.headers["location"])).text
    assert "The adjustment is approved and posted." in after
    assert f'id="adjustment-{adjustment_id}"' not in after
    assert await available(db, in_ledger, member["email"]) == 6100

    twice = await post_form(supervisor_web, "/console/approvals",
                            f"/console/approvals/{adjustment_id}",
                            {"decision": "reject", "note": "too late"})
    assert twice.status_code == 409
    assert "already decided" in twice.text
    assert await available(db, in_ledger, member["email"]) == 6100


async def test_a_supervisor_neither_approves_nor_rejects_their_own(
        web: httpx.AsyncClient, supervisor_web: httpx.AsyncClient, app: Litestar,
        db: Database, settings: Settings, in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger)
    await signed_in_staff(supervisor_web, db, settings, "supervisor")
    queued = await adjust(supervisor_web, member, amount="60000")
    assert queued.headers["location"].endswith("?done=pending")
    queue = (await supervisor_web.get("/console/approvals")).text
    own = re.findall(r'id="adjustment-(\d+)"', queue)
    adjustment_id = own[0]
    section = queue.split(f'id="adjustment-{adjustment_id}"', 1)[1].split("</li>", 1)[0]
    assert "Your own request" in section and "<form" not in section
    for decision in ("approve", "reject"):
        refused = await post_form(supervisor_web, "/console/approvals",
                                  f"/console/approvals/{adjustment_id}",
                                  {"decision": decision, "note": "self"})
        assert refused.status_code == 403
        assert "Nobody approves or rejects their own adjustment." in refused.text
    assert await available(db, in_ledger, member["email"]) == 0

    await signed_in_staff(web, db, settings, "admin")
    rejected = await post_form(web, "/console/approvals", f"/console/approvals/{adjustment_id}",
                               {"decision": "reject", "note": "No reason for so much"})
    assert rejected.status_code == 303
    assert "The adjustment is rejected." in (await web.get(rejected.headers["location"])).text
    page = (await web.get(f"/console/members/{member['id']}")).text
    assert "Rejected" in adjustments_table(page) and "No reason for so much" in page
    assert await available(db, in_ledger, member["email"]) == 0


@pytest.mark.parametrize(("fields", "errors"), [
    ({"unit": "", "amount": "", "reasonCode": "", "note": ""},
     {"unit": "This field is not valid.", "amount": "This field is required.",
      "reasonCode": "This field is required.", "note": "This field is required."}),
    ({"amount": "abc"}, {"amount": "Enter a whole number of miles"}),
    ({"amount": "1,5"}, {"amount": "Enter a whole number of miles"}),
    ({"amount": "12.5"}, {"amount": "Enter a whole number of miles"}),
    ({"amount": "0"}, {"amount": "must not be zero"}),
    ({"amount": "-1000000001"}, {"amount": "must not be zero"}),
    ({"amount": "9" * 400}, {"amount": "must not be zero"}),
    ({"unit": "SEGMENTS"}, {"unit": "This field is not valid."}),
    ({"reasonCode": "NO_SUCH_CODE"}, {"reasonCode": "Choose a reason code from the list."}),
    ({"reasonCode": "goodwill'; drop table members;--"},
     {"reasonCode": "Choose a reason code from the list."}),
    ({"note": "x" * 1001}, {"note": "This field is not valid."}),
    ({"note": "null\x00byte"}, {"note": "This field is not valid."}),
    ({"amount": "-5000"}, {"amount": "Not enough miles for this."}),
])
async def test_wrong_values_change_nothing(web: httpx.AsyncClient, app: Litestar,
                                           db: Database, settings: Settings, in_ledger: Any,
                                           fields: dict[str, str],
                                           errors: dict[str, str]) -> None:
    member = await member_with_miles(app, db, in_ledger, 1000)
    await signed_in_staff(web, db, settings, "agent")
    response = await adjust(web, member, **({"amount": "100"} | fields))
    assert response.status_code in (404, 409, 422)
    for name, text in errors.items():
        error = re.search(rf'<p class="error" id="f-{name}-error">([^<]*)</p>', response.text)
        assert error and text in error.group(1), (name, response.text[-3000:])
        assert f'aria-describedby="f-{name}' in response.text
    assert 'role="alert"' in response.text
    assert await available(db, in_ledger, member["email"]) == 1000
    assert "No adjustments." in (await web.get(f"/console/members/{member['id']}")).text


async def test_the_same_form_sent_twice_adjusts_once(web: httpx.AsyncClient, app: Litestar,
                                                     db: Database, settings: Settings,
                                                     in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger)
    await signed_in_staff(web, db, settings, "agent")
    page = f"/console/members/{member['id']}"
    html = (await web.get(page)).text
    key = re.search(r'name="formKey" value="([^"]+)"', html)
    assert key
    form = {"csrf_token": csrf_of(html), "formKey": key.group(1), "amount": "300"} | ADJUST
    first = await web.post(f"{page}/adjustments", data=form)
    second = await web.post(f"{page}/adjustments", data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert await available(db, in_ledger, member["email"]) == 300
    changed = await web.post(f"{page}/adjustments", data=form | {"amount": "400"})
    assert changed.status_code == 409
    assert await available(db, in_ledger, member["email"]) == 300
    # A new page has a new key.
    again = await adjust(web, member, amount="300")
    assert again.status_code == 303
    assert await available(db, in_ledger, member["email"]) == 600


async def test_adjusting_needs_csrf_and_staff(web: httpx.AsyncClient, app: Litestar,
                                              db: Database, settings: Settings,
                                              in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger)
    page = f"/console/members/{member['id']}"
    anonymous = await web.post(f"{page}/adjustments", data=ADJUST | {"amount": "10"})
    assert anonymous.status_code == 403
    await signed_in_staff(web, db, settings, "agent")
    no_token = await web.post(f"{page}/adjustments", data=ADJUST | {"amount": "10"})
    assert no_token.status_code == 403
    assert await available(db, in_ledger, member["email"]) == 0


async def test_the_daily_limit_sends_the_rest_to_a_supervisor(
        web: httpx.AsyncClient, app: Litestar, db: Database, settings: Settings,
        in_ledger: Any) -> None:
    member = await member_with_miles(app, db, in_ledger)
    await signed_in_staff(web, db, settings, "agent")
    for _ in range(4):  # four of 5,000: the agent's whole day (20,000)
        assert (await adjust(web, member, amount="5000")).headers["location"].endswith(
            "?done=posted")
    over = await adjust(web, member, amount="1")
    assert over.headers["location"].endswith("?done=pending")
    html = (await web.get(over.headers["location"])).text
    assert "Waiting for a supervisor (above the daily limit)" in html
    assert await available(db, in_ledger, member["email"]) == 20000


async def test_a_deactivated_reason_code_is_refused(web: httpx.AsyncClient, app: Litestar,
                                                    db: Database, settings: Settings,
                                                    system: SystemAccounts,
                                                    in_ledger: Any) -> None:
    code = "OLD_" + uuid.uuid4().hex[:8].upper()
    admin = StaffContext(Principal("staff", 1, Role.ADMIN), None)

    async def retire(session: AsyncSession) -> None:
        service = AdjustmentService(session, system, admin)
        await service.add_reason_code(ReasonCodeCreate(code=code, description="Old"))
        await service.set_reason_code_active(code, False)

    await db.transaction(retire)
    member = await member_with_miles(app, db, in_ledger)
    await signed_in_staff(web, db, settings, "agent")
    assert f'value="{code}"' not in (await web.get(f"/console/members/{member['id']}")).text
    refused = await adjust(web, member, amount="10", reasonCode=code)
    assert refused.status_code == 409
    assert "no longer in use" in refused.text
    assert await available(db, in_ledger, member["email"]) == 0


async def test_a_merged_member_is_shown_closed_and_cannot_be_adjusted(
        web: httpx.AsyncClient, app: Litestar, db: Database, settings: Settings,
        system: SystemAccounts, in_ledger: Any) -> None:
    duplicate = await member_with_miles(app, db, in_ledger, 300)
    target = await member_with_miles(app, db, in_ledger, 700)
    await signed_in_staff(web, db, settings, "supervisor")
    page = f"/console/members/{duplicate['id']}"
    form_page = (await web.get(page)).text  # the form, as it was before the merge
    supervisor = StaffContext(Principal("staff", 1, Role.SUPERVISOR), None)
    await db.transaction(lambda s: MemberOperations(s, settings, system, supervisor).merge(
        duplicate["cardNumber"], target["cardNumber"], "Duplicate enrolment"))

    html = (await web.get(page)).text
    assert "Member status: Closed." in html
    assert f"Merged into card {target['cardNumber']}." in html
    assert "/adjustments" not in html and "Lock the member" not in html
    key = re.search(r'name="formKey" value="([^"]+)"', form_page)
    assert key
    refused = await web.post(f"{page}/adjustments", data=ADJUST | {
        "csrf_token": csrf_of(form_page), "formKey": key.group(1), "amount": "50"})
    assert refused.status_code == 409
    assert "The membership is closed." in refused.text
    assert await available(db, in_ledger, target["email"]) == 1000
    merged_into = (await web.get(f"/console/members/{target['id']}")).text
    assert "Merged from" in merged_into and duplicate["cardNumber"] in merged_into
