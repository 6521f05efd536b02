"""The member portal over HTTP: sign-up, sign-in, dashboard, statement and CSV, claims,
profile, password, sessions and CSRF."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from lms.db import Database
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, Unit
from lms.web.models import WebSession
from tests.factories import TEST_ACTOR, unique_email
from tests.web.support import PASSWORD, account_of, browser, csrf_of, sign_up, submit


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


async def test_anonymous_home_goes_to_sign_in(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in"
    page = await web.get("/statement")
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/statement"


async def test_sign_up_signs_in_and_shows_the_dashboard(web: httpx.AsyncClient) -> None:
    fields = await sign_up(web)
    cookie = next(c for c in web.cookies.jar if c.name == "__Host-lms_member")
    assert cookie.secure
    assert cookie.has_nonstandard_attr("HttpOnly")
    home = await web.get("/")
    assert home.status_code == 200
    assert f"Hello, {fields['firstName']}" in home.text
    assert 'id="balance"' in home.text
    assert '<html lang="en">' in home.text
    assert home.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in home.headers["content-security-policy"]


async def test_session_cookie_attributes(web: httpx.AsyncClient) -> None:
    fields = {"firstName": "Bo", "lastName": "Li", "email": unique_email("cookie"),
              "password": PASSWORD, "passwordAgain": PASSWORD}
    html = (await web.get("/sign-up")).text
    response = await web.post("/sign-up", data={"csrf_token": csrf_of(html), **fields})
    assert response.status_code == 303
    header = next(v for k, v in response.headers.multi_items() if k == "set-cookie"
                  and v.startswith("__Host-lms_member=")).lower()
    assert "httponly" in header and "secure" in header and "samesite=lax" in header
    assert "path=/" in header


async def test_sign_up_refusals_keep_the_values_but_not_the_password(
        web: httpx.AsyncClient) -> None:
    response = await submit(web, "/sign-up", "/sign-up", {
        "firstName": "Ada", "lastName": "", "email": "not-an-email",
        "password": "short", "passwordAgain": "short"})
    assert response.status_code == 422
    assert 'value="not-an-email"' in response.text
    assert "short" not in response.text
    assert 'aria-invalid="true"' in response.text
    weak = await submit(web, "/sign-up", "/sign-up", {
        "firstName": "Ada", "lastName": "L", "email": "weak@example.com",
        "password": "short", "passwordAgain": "short"})
    assert weak.status_code == 422
    assert "too weak" in weak.text
    hostile = await submit(web, "/sign-up", "/sign-up", {
        "firstName": "<script>alert(1)</script>", "lastName": "L",
        "email": "bad\"@example.com", "password": PASSWORD, "passwordAgain": "other one!"})
    assert hostile.status_code == 422
    assert "<script>alert(1)</script>" not in hostile.text
    assert "&lt;script&gt;" in hostile.text


async def test_sign_up_twice_with_one_email(web: httpx.AsyncClient, app: Litestar) -> None:
    fields = await sign_up(web)
    async with browser(app) as other:
        again = await submit(other, "/sign-up", "/sign-up", fields)
    assert again.status_code == 409
    assert "already exists" in again.text


async def test_post_without_csrf_token_is_refused(web: httpx.AsyncClient) -> None:
    await web.get("/sign-in")
    response = await web.post("/sign-in", data={"email": "a@example.com", "password": "x"})
    assert response.status_code == 403
    assert "security token" in response.text
    wrong = await web.post("/sign-in", data={"email": "a@example.com", "password": "x",
                                             "csrf_token": "A" * 43})
    assert wrong.status_code == 403


async def test_signed_in_forms_need_the_session_token(web: httpx.AsyncClient,
                                                      app: Litestar) -> None:
    await sign_up(web)
    anonymous_token = csrf_of((await browser(app).get("/sign-in")).text)
    refused = await web.post("/sign-out", data={"csrf_token": anonymous_token})
    assert refused.status_code == 403
    assert (await web.get("/")).status_code == 200


async def test_sign_in_wrong_password_then_throttled(web: httpx.AsyncClient) -> None:
    fields = await sign_up(web)
    await submit(web, "/profile", "/sign-out", {})
    for _ in range(5):
        wrong = await submit(web, "/sign-in", "/sign-in",
                             {"email": fields["email"], "password": "wrong password!"})
        assert wrong.status_code == 401
        assert "Wrong e-mail or password" in wrong.text
    right = await submit(web, "/sign-in", "/sign-in",
                         {"email": fields["email"], "password": PASSWORD})
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) > 0


async def test_sign_in_and_out(web: httpx.AsyncClient, db: Database) -> None:
    fields = await sign_up(web)
    await submit(web, "/", "/sign-out", {})
    assert (await web.get("/")).status_code == 303
    signed = await submit(web, "/sign-in", "/sign-in",
                          {"email": fields["email"].upper(), "password": PASSWORD,
                           "next": "/claims"})
    assert signed.status_code == 303
    assert signed.headers["location"] == "/claims"
    assert (await web.get("/claims")).status_code == 200
    evil = await submit(web, "/", "/sign-out", {})
    assert evil.status_code == 303
    again = await submit(web, "/sign-in", "/sign-in",
                         {"email": fields["email"], "password": PASSWORD,
                          "next": "//evil.example/"})
    assert again.headers["location"] == "/"


async def test_sign_out_everywhere_ends_other_sessions(app: Litestar) -> None:
    async with browser(app) as phone, browser(app) as laptop:
        fields = await sign_up(phone)
        await submit(laptop, "/sign-in", "/sign-in",
                     {"email": fields["email"], "password": PASSWORD})
        assert (await laptop.get("/")).status_code == 200
        out = await submit(phone, "/profile", "/sign-out-everywhere", {})
        assert out.headers["location"] == "/sign-in?done=signed-out-everywhere"
        assert (await laptop.get("/")).status_code == 303
        assert (await phone.get("/")).status_code == 303


async def test_idle_and_absolute_expiry(web: httpx.AsyncClient, db: Database,
                                        app: Litestar) -> None:
    fields = await sign_up(web)
    member_id, _ = await account_of(db, fields["email"])

    async def age(field: str, by: timedelta) -> None:
        async def work(session: Any) -> None:
            row = (await session.execute(select(WebSession).where(
                WebSession.principal_id == member_id,
                WebSession.principal_type == "member"))).scalar_one()
            setattr(row, field, getattr(row, field) - by)
        await db.transaction(work)

    idle = app.state.settings.web_session_idle_seconds
    await age("last_seen_at", timedelta(seconds=idle - 60))
    assert (await web.get("/")).status_code == 200  # and the idle clock restarts
    await age("last_seen_at", timedelta(seconds=idle + 1))
    assert (await web.get("/")).status_code == 303

    await submit(web, "/sign-in", "/sign-in", {"email": fields["email"], "password": PASSWORD})

    async def expire(session: Any) -> None:
        for row in (await session.execute(select(WebSession).where(
                WebSession.principal_id == member_id, WebSession.revoked_at.is_(None)))
                ).scalars():
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    await db.transaction(expire)
    assert (await web.get("/")).status_code == 303


async def credit(in_ledger: Any, account: int, miles: int, description: str,
                 kind: EntryKind = EntryKind.ACCRUAL, unit: Unit = Unit.MILES) -> None:
    async def work(ledger: Ledger) -> None:
        await ledger.credit(account, miles, kind=kind, actor=TEST_ACTOR,
                            description=description, unit=unit)
    await in_ledger(work)


async def test_dashboard_shows_balance_expiry_and_tier(web: httpx.AsyncClient, db: Database,
                                                       in_ledger: Any) -> None:
    fields = await sign_up(web)
    _, account = await account_of(db, fields["email"])
    await credit(in_ledger, account, 12345, "Flight LHR-JFK")
    await credit(in_ledger, account, 5000, "Status", unit=Unit.STATUS_MILES)
    home = (await web.get("/")).text
    assert "12,345" in home
    assert "Basic" in home
    assert 'id="progress-miles" max="25000" value="5000"' in home
    assert "20,000" in home  # status miles still missing for Silver


async def test_statement_filters_and_csv(web: httpx.AsyncClient, db: Database,
                                         in_ledger: Any) -> None:
    fields = await sign_up(web)
    _, account = await account_of(db, fields["email"])
    await credit(in_ledger, account, 700, "Flight LHR-JFK")
    await credit(in_ledger, account, 300, "=HYPERLINK(\"http://evil\")",
                 kind=EntryKind.ADJUSTMENT)
    page = (await web.get("/statement")).text
    assert "Flight LHR-JFK" in page and "+700" in page
    only = (await web.get("/statement", params={"kind": "adjustment"})).text
    assert "Flight LHR-JFK" not in only and "HYPERLINK" in only
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    empty = (await web.get("/statement", params={"from": tomorrow})).text
    assert 'id="no-lines"' in empty
    junk = await web.get("/statement", params={"from": "junk", "kind": "nope",
                                               "unit": "X", "cursor": "!!"})
    assert junk.status_code in (200, 303)
    exported = await web.get("/statement.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][0] == "Date"
    assert [r[5] for r in rows[1:]] == ["300", "700"]
    assert rows[1][2].startswith("'=")  # a formula is not run by a spreadsheet
    filtered = list(csv.reader(io.StringIO(
        (await web.get("/statement.csv", params={"kind": "accrual"})).text)))
    assert [r[5] for r in filtered[1:]] == ["700"]


async def test_claims(web: httpx.AsyncClient) -> None:
    await sign_up(web)
    flown = (date.today() - timedelta(days=3)).isoformat()
    filed = await submit(web, "/claims", "/claims", {
        "ticketNumber": "074 1234567890", "flightNumber": "lm0123", "flightDate": flown})
    assert filed.status_code == 303, filed.text
    page = (await web.get("/claims?filed=1")).text
    assert "LM123" in page and "0741234567890" in page and "Waiting for the airline" in page
    twice = await submit(web, "/claims", "/claims", {
        "ticketNumber": "0741234567890", "flightNumber": "LM123", "flightDate": flown})
    assert twice.status_code == 409
    bad = await submit(web, "/claims", "/claims", {
        "ticketNumber": "12", "flightNumber": "LM123", "flightDate": flown})
    assert bad.status_code == 422
    old = await submit(web, "/claims", "/claims", {
        "ticketNumber": "0741234567891", "flightNumber": "LM123", "flightDate": "2001-01-01"})
    assert old.status_code == 422
    assert "180 days" in old.text


async def test_profile_and_password(web: httpx.AsyncClient, app: Litestar) -> None:
    fields = await sign_up(web)
    saved = await submit(web, "/profile", "/profile", {
        "firstName": "Augusta", "lastName": "King", "phone": "+44 20 7946 0959",
        "locale": "en-GB", "timezone": "Europe/London"})
    assert saved.status_code == 303, saved.text
    assert "Augusta" in (await web.get("/profile")).text
    bad_zone = await submit(web, "/profile", "/profile", {
        "firstName": "A", "lastName": "K", "locale": "en", "timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 422
    wrong = await submit(web, "/profile", "/profile/password", {
        "currentPassword": "not it at all", "password": "new password 456",
        "passwordAgain": "new password 456"})
    assert wrong.status_code == 422
    assert "current password is not right" in wrong.text
    changed = await submit(web, "/profile", "/profile/password", {
        "currentPassword": PASSWORD, "password": "new password 456",
        "passwordAgain": "new password 456"})
    assert changed.status_code == 303
    async with browser(app) as other:
        old = await submit(other, "/sign-in", "/sign-in",
                           {"email": fields["email"], "password": PASSWORD})
        assert old.status_code == 401
        new = await submit(other, "/sign-in", "/sign-in",
                           {"email": fields["email"], "password": "new password 456"})
        assert new.status_code == 303


async def test_no_secret_in_pages(web: httpx.AsyncClient, db: Database) -> None:
    fields = await sign_up(web)
    session_token = next(c.value for c in web.cookies.jar if c.name == "__Host-lms_member")
    assert session_token
    for path in ("/", "/statement", "/claims", "/profile"):
        html = (await web.get(path)).text
        assert session_token not in html
        assert PASSWORD not in html
        assert "$argon2" not in html
    assert fields["password"] not in (await web.get("/profile")).text
