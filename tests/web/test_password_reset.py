"""Password reset by e-mail link: the mail goes out through the Celery task to a real local
SMTP server (aiosmtpd); the link works once, for an hour, and signs the member out
everywhere."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from litestar import Litestar
from sqlalchemy import update

from lms.db import Database
from lms.settings import get_settings
from lms.web.models import PasswordReset
from lms.worker import app as celery
from tests.web.support import PASSWORD, account_of, browser, sign_up, submit

NEW_PASSWORD = "a brand new secret 9"
LINK = re.compile(r"(http://\S+/password/reset\?token=\S+)")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def link_for(self, email: str) -> str:
        mails = [m for m in self.messages if m["To"] == email]
        assert len(mails) == 1, f"{len(mails)} mails to {email}"
        body = mails[0].get_payload(decode=True)
        assert isinstance(body, bytes)
        found = LINK.search(body.decode())
        assert found, body
        return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A real SMTP server on a free port, the worker's settings pointed at it, and Celery
    running tasks in the calling thread (the task itself, its retries and SMTP included)."""
    handler = Inbox()
    port = free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("LMS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LMS_SMTP_PORT", str(port))
    get_settings.cache_clear()
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    try:
        yield handler
    finally:
        celery.conf.task_always_eager = False
        celery.conf.task_eager_propagates = False
        server.stop()
        get_settings.cache_clear()


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


def path_of(link: str) -> str:
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


async def test_reset_by_mailed_link(web: httpx.AsyncClient, app: Litestar,
                                    inbox: Inbox) -> None:
    fields = await sign_up(web)
    async with browser(app) as stranger:
        asked = await submit(stranger, "/password/forgot", "/password/forgot",
                             {"email": fields["email"]})
        assert asked.status_code == 200
        assert "we have sent it a link" in asked.text
        link = inbox.link_for(fields["email"])
        mail = inbox.messages[-1]
        assert mail["Subject"] == "Reset your password"

        opened = await stranger.get(path_of(link))
        assert opened.status_code == 303
        assert opened.headers["location"] == "/password/reset"
        form = await stranger.get("/password/reset")
        assert form.status_code == 200
        token = link.split("token=", 1)[1]
        assert token not in form.text  # the secret stays out of the page

        differ = await submit(stranger, "/password/reset", "/password/reset",
                              {"password": NEW_PASSWORD, "passwordAgain": "something else"})
        assert differ.status_code == 422
        weak = await submit(stranger, "/password/reset", "/password/reset",
                            {"password": "short", "passwordAgain": "short"})
        assert weak.status_code == 422
        assert "too weak" in weak.text
        done = await submit(stranger, "/password/reset", "/password/reset",
                            {"password": NEW_PASSWORD, "passwordAgain": NEW_PASSWORD})
        assert done.status_code == 303
        assert done.headers["location"] == "/sign-in?done=reset"

        # The member's other browser was signed out; the old password is gone.
        assert (await web.get("/")).status_code == 303
        old = await submit(stranger, "/sign-in", "/sign-in",
                           {"email": fields["email"], "password": PASSWORD})
        assert old.status_code == 401
        new = await submit(stranger, "/sign-in", "/sign-in",
                           {"email": fields["email"], "password": NEW_PASSWORD})
        assert new.status_code == 303

    async with browser(app) as again:
        await again.get(path_of(link))
        reused = await again.get("/password/reset")
        assert reused.status_code == 400
        assert "not valid any more" in reused.text


async def test_unknown_address_gets_the_same_answer_and_no_mail(
        web: httpx.AsyncClient, inbox: Inbox) -> None:
    asked = await submit(web, "/password/forgot", "/password/forgot",
                         {"email": "nobody-at-all@example.com"})
    assert asked.status_code == 200
    assert "we have sent it a link" in asked.text
    assert inbox.messages == []


async def test_a_link_expires_after_an_hour(web: httpx.AsyncClient, app: Litestar,
                                            db: Database, inbox: Inbox) -> None:
    fields = await sign_up(web)
    member_id, _ = await account_of(db, fields["email"])
    await submit(web, "/password/forgot", "/password/forgot", {"email": fields["email"]})
    link = inbox.link_for(fields["email"])

    async def age(session: Any) -> None:
        await session.execute(update(PasswordReset).where(
            PasswordReset.member_id == member_id).values(
            expires_at=PasswordReset.expires_at - timedelta(hours=1, seconds=1)))
    await db.transaction(age)
    async with browser(app) as later:
        await later.get(path_of(link))
        assert (await later.get("/password/reset")).status_code == 400
        posted = await submit(later, "/sign-in", "/password/reset",
                              {"password": NEW_PASSWORD, "passwordAgain": NEW_PASSWORD})
        assert posted.status_code == 400
        signed = await submit(later, "/sign-in", "/sign-in",
                              {"email": fields["email"], "password": PASSWORD})
        assert signed.status_code == 303  # the password did not change


async def test_a_made_up_token_is_refused(web: httpx.AsyncClient) -> None:
    await web.get("/password/reset?token=made-up")
    page = await web.get("/password/reset")
    assert page.status_code == 400
