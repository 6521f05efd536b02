"""The portal's partner code page over HTTP: a one-time code shown once, that a partner can
use (from the family pool for its head), the state of the member's codes, and refusals."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar

from lms.accounts.repository import MemberRepository
from lms.db import Database
from lms.errors import LmsError
from lms.family.service import FamilyService
from lms.partners.repository import PartnerRepository
from lms.redemption.service import INTERNAL_PARTNER, CodeCheck, check_member_code
from lms.settings import Settings
from tests.web.support import browser, sign_up, submit

CODE = re.compile(r'<p class="code" id="code">(\d{8})</p>')


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


async def card_of(db: Database, email: str) -> tuple[int, str]:
    found = await db.transaction(lambda s: MemberRepository(s).by_email(email))
    assert found is not None
    return found.id, found.card_number


async def partner_check(db: Database, settings: Settings, card: str, code: str
                        ) -> CodeCheck | LmsError | None:
    """The code as a partner presents it (the programme's own airline)."""
    partner = await db.transaction(lambda s: PartnerRepository(s).by_code(INTERNAL_PARTNER))
    assert partner is not None
    try:
        return await check_member_code(db, settings, partner.id, card, code)
    except LmsError as refusal:
        return refusal


async def test_code_is_shown_once_and_works_at_a_partner(
        web: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    fields = await sign_up(web)
    member_id, card = await card_of(db, fields["email"])
    page = await web.get("/redemption-code")
    assert page.status_code == 200
    assert "No code is valid now." in page.text
    assert "Spend the family pool" not in page.text

    issued = await submit(web, "/redemption-code", "/redemption-code",
                          {"partnerCode": " LM-Awards "})
    assert issued.status_code == 200, issued.text
    found = CODE.search(issued.text)
    assert found, issued.text
    assert "Only partner lm-awards can use it." in issued.text
    assert "Codes valid now and not yet used: 1." in issued.text
    assert issued.headers["cache-control"] == "no-store"
    # Shown once: the page does not show it again.
    assert found.group(1) not in (await web.get("/redemption-code")).text

    check = await partner_check(db, settings, card, found.group(1))
    assert isinstance(check, CodeCheck)
    assert check.member_id == member_id and check.account_id is None


@pytest.mark.parametrize(("fields", "status", "text"), [
    ({"partnerCode": "no-such-partner"}, 422, "No partner with this code."),
    ({"partnerCode": "<script>alert(1)</script>"}, 422, "This field is not valid."),
    ({"partnerCode": "x" * 5000}, 422, "This field is not valid."),
    ({"fromPool": "1"}, 409, "Only the head of the family pool may do this."),
])
async def test_refusals_make_no_code(web: httpx.AsyncClient, fields: dict[str, str],
                                     status: int, text: str) -> None:
    await sign_up(web)
    answer = await submit(web, "/redemption-code", "/redemption-code", fields)
    assert answer.status_code == status, answer.text
    assert text in answer.text
    assert "<script>alert(1)</script>" not in answer.text
    assert not CODE.search(answer.text)
    assert "No code is valid now." in (await web.get("/redemption-code")).text


async def test_pool_head_gets_a_code_for_the_pool(web: httpx.AsyncClient, db: Database,
                                                  settings: Settings, app: Litestar) -> None:
    fields = await sign_up(web)
    member_id, card = await card_of(db, fields["email"])
    await submit(web, "/family", "/family/create", {})
    page = await web.get("/redemption-code")
    assert "Spend the family pool" in page.text
    issued = await submit(web, "/redemption-code", "/redemption-code", {"fromPool": "1"})
    assert issued.status_code == 200
    assert "It spends the miles of your family pool." in issued.text
    found = CODE.search(issued.text)
    assert found
    check = await partner_check(db, settings, card, found.group(1))
    assert isinstance(check, CodeCheck)
    view = await db.transaction(
        lambda s: FamilyService(s, app.state.system_accounts).view(member_id))
    assert view.pool is not None and check.account_id == view.pool.account_id


async def test_page_needs_sign_in(web: httpx.AsyncClient) -> None:
    response = await web.get("/redemption-code")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/redemption-code"
