"""The agent console over HTTP: staff sign-in (roles, throttling), search by card or e-mail,
the member page, and that a member's session is no staff session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar

from lms.db import Database
from lms.settings import Settings
from tests.factories import asgi_client, register_member
from tests.web.support import STAFF_PASSWORD, account_of, browser, create_staff, sign_up, submit


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


async def staff_sign_in(client: httpx.AsyncClient, email: str,
                        password: str = STAFF_PASSWORD) -> httpx.Response:
    return await submit(client, "/console/sign-in", "/console/sign-in",
                        {"email": email, "password": password})


async def test_console_needs_a_staff_session(web: httpx.AsyncClient) -> None:
    response = await web.get("/console")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=/console"
    await sign_up(web)  # a member's session opens nothing in the console
    assert (await web.get("/console")).status_code == 303


async def test_agent_finds_a_member_by_card_and_email(web: httpx.AsyncClient, app: Litestar,
                                                      db: Database, settings: Settings) -> None:
    async with browser(app) as member_browser:
        fields = await sign_up(member_browser, firstName="Grace", lastName="Hopper")
    member_id, _ = await account_of(db, fields["email"])
    agent = await create_staff(db, settings, "agent")
    signed = await staff_sign_in(web, agent)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console"
    cookie = next(c for c in web.cookies.jar if c.name == "__Host-lms_staff")
    assert cookie.secure
    card = (await web.get(f"/console/members/{member_id}")).text
    assert "Grace Hopper" in card
    number = card.split('class="mono small">', 1)[1].split("<", 1)[0]
    found = (await web.get("/console", params={"q": " " + number + " "})).text
    assert f'href="/console/members/{member_id}"' in found
    by_email = (await web.get("/console", params={"q": fields["email"].upper()})).text
    assert f'href="/console/members/{member_id}"' in by_email
    nothing = (await web.get("/console", params={"q": "<b>0000</b>"})).text
    assert "&lt;b&gt;0000&lt;/b&gt;" in nothing
    missing = await web.get("/console/members/999999999")
    assert missing.status_code == 404


async def test_marketers_and_wrong_passwords_are_refused(web: httpx.AsyncClient, db: Database,
                                                         settings: Settings) -> None:
    marketer = await create_staff(db, settings, "marketer")
    refused = await staff_sign_in(web, marketer)
    assert refused.status_code == 403
    assert (await web.get("/console")).status_code == 303
    agent = await create_staff(db, settings, "agent")
    for _ in range(5):
        assert (await staff_sign_in(web, agent, "wrong password")).status_code == 401
    assert (await staff_sign_in(web, agent)).status_code == 429


async def test_console_sign_out_and_csrf(web: httpx.AsyncClient, db: Database,
                                         settings: Settings) -> None:
    agent = await create_staff(db, settings, "supervisor")
    await staff_sign_in(web, agent)
    assert (await web.get("/console")).status_code == 200
    refused = await web.post("/console/sign-out")
    assert refused.status_code == 403
    assert (await web.get("/console")).status_code == 200
    out = await submit(web, "/console", "/console/sign-out", {})
    assert out.status_code == 303
    assert out.headers["location"] == "/console/sign-in?done=signed-out"
    assert (await web.get("/console")).status_code == 303


async def test_console_sign_out_everywhere_ends_the_agents_other_sessions(
        app: Litestar, db: Database, settings: Settings) -> None:
    agent = await create_staff(db, settings, "agent")
    async with browser(app) as desk, browser(app) as laptop:
        await staff_sign_in(desk, agent)
        await staff_sign_in(laptop, agent)
        assert (await laptop.get("/console")).status_code == 200
        out = await submit(desk, "/console", "/console/sign-out-everywhere", {})
        assert out.status_code == 303
        assert out.headers["location"] == "/console/sign-in?done=signed-out-everywhere"
        assert (await laptop.get("/console")).status_code == 303
        assert (await desk.get("/console")).status_code == 303


async def test_agent_finds_members_by_name_and_phone(web: httpx.AsyncClient, app: Litestar,
                                                     db: Database, settings: Settings) -> None:
    surname = "Zq" + uuid.uuid4().hex[:8]
    async with asgi_client(app) as api:
        first = (await register_member(api, firstName="Radia", lastName=surname,
                                       phone="+44 20 7946 0123"))["member"]
        second = (await register_member(api, firstName="Anita", lastName=surname))["member"]
    agent = await create_staff(db, settings, "agent")
    await staff_sign_in(web, agent)
    by_last = (await web.get("/console", params={"q": surname.lower()})).text
    assert f'href="/console/members/{first["id"]}"' in by_last
    assert f'href="/console/members/{second["id"]}"' in by_last
    full = (await web.get("/console", params={"q": f"{surname}, Rad"})).text
    assert f'href="/console/members/{first["id"]}"' in full
    assert f'href="/console/members/{second["id"]}"' not in full
    by_phone = (await web.get("/console", params={"q": "+44 (20) 7946-0123"})).text
    assert f'href="/console/members/{first["id"]}"' in by_phone
    wrong = await web.get("/console", params={"q": "+1"})
    assert wrong.status_code == 422
    assert 'id="f-q-error"' in wrong.text and "The phone number is not valid." in wrong.text


async def test_the_language_switcher_works_for_signed_in_staff(
        web: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    for signed_in in (False, True):
        if signed_in:
            await staff_sign_in(web, await create_staff(db, settings, "agent"))
        page = "/console" if signed_in else "/console/sign-in"
        html = (await web.get(page)).text
        assert 'action="/console/language"' in html
        switched = await submit(web, page, "/console/language",
                                {"lang": "ru", "next": page})
        assert switched.status_code == 303 and switched.headers["location"] == page
        assert '<html lang="ru">' in (await web.get(page)).text
        back = await submit(web, page, "/console/language",
                            {"lang": "en", "next": "//evil.example/console"})
        assert back.headers["location"] == "/console"
        assert '<html lang="en">' in (await web.get(page)).text


async def test_form_errors_are_in_the_page_language(web: httpx.AsyncClient, app: Litestar,
                                                    db: Database, settings: Settings) -> None:
    web.headers["Accept-Language"] = "ru"
    portal = await submit(web, "/sign-in", "/sign-in", {"email": "", "password": ""})
    assert portal.status_code == 422
    assert "Это поле обязательно" in portal.text and "This field is required" not in portal.text
    async with asgi_client(app) as api:
        member = (await register_member(api))["member"]
    await staff_sign_in(web, await create_staff(db, settings, "agent"))
    page = f"/console/members/{member['id']}"
    refused = await submit(web, page, f"{page}/adjustments",
                           {"unit": "MILES", "amount": "1,5", "reasonCode": "", "note": ""})
    assert refused.status_code == 422
    assert "Введите целое число миль" in refused.text
    assert "Это поле обязательно" in refused.text and "Выберите причину" in refused.text
    assert "Премиальные мили" in refused.text and "Award miles" not in refused.text
