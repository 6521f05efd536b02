"""Russian and English: complete catalogues, the browser's language, the member's language and
the switcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po
from litestar import Litestar

from lms.db import Database
from lms.web import i18n
from tests.web.support import account_of, browser, sign_up, submit

WEB = Path(i18n.__file__).parent


def extracted() -> set[str]:
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = extract_from_dir(str(WEB), method_map=[("**.py", "python"),
                                                   ("**/templates/**.html", "jinja2")],
                             keywords=keywords)
    return {message if isinstance(message, str) else message[0]
            for _, _, message, _, _ in found}


def test_every_message_has_a_russian_translation() -> None:
    with (WEB / "locale" / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="ru")
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(extracted() - translated)
    assert missing == [], "run pybabel extract/update and translate: " + repr(missing)


@pytest.mark.parametrize(("header", "language"), [
    ("ru-RU,ru;q=0.9,en-US;q=0.8", "ru"), ("ru", "ru"), ("en-GB,en;q=0.9", "en"),
    ("de-DE, ru;q=0.5", "ru"), ("fr", "en"), ("", "en"), ("en;q=0.1, ru;q=0.9", "ru"),
    ("garbage;;q=x,,", "en"),
])
def test_accept_language(header: str, language: str) -> None:
    assert i18n.from_accept_language(header) == language


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


async def test_browser_language_then_switcher(web: httpx.AsyncClient) -> None:
    russian = await web.get("/sign-in", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert '<html lang="ru">' in russian.text
    assert "Войти" in russian.text
    switched = await submit(web, "/sign-in", "/language", {"lang": "en", "next": "/sign-in"})
    assert switched.status_code == 303
    assert switched.headers["location"] == "/sign-in"
    english = await web.get("/sign-in", headers={"Accept-Language": "ru"})
    assert '<html lang="en">' in english.text and "Sign in" in english.text


async def test_members_language_wins_and_the_switch_is_saved(
        web: httpx.AsyncClient, app: Litestar, db: Database) -> None:
    fields = await sign_up(web)
    await submit(web, "/", "/language", {"lang": "ru", "next": "/"})
    home = await web.get("/", headers={"Accept-Language": "en"})
    assert '<html lang="ru">' in home.text
    assert "Ваши мили" in home.text
    member_id, _ = await account_of(db, fields["email"])
    async with browser(app) as elsewhere:
        await submit(elsewhere, "/sign-in", "/sign-in",
                     {"email": fields["email"], "password": fields["password"]})
        page = await elsewhere.get("/", headers={"Accept-Language": "en"})
        assert "Ваши мили" in page.text  # the choice follows the member, not the browser
    assert member_id


async def test_open_redirect_through_the_switcher_is_refused(web: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        response = await submit(web, "/sign-in", "/language", {"lang": "ru", "next": target})
        assert response.headers["location"] == "/"
