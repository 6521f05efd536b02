"""Celery task of the web pages: the password-reset mail.

The link carries the one secret the database does not keep (only its hash), so the task takes
the link itself rather than an id; it is enqueued only after the token's row has committed.
SMTP failures are retried; a second delivery of the same link does no harm.
"""

from __future__ import annotations

import smtplib
from typing import Any

from lms.settings import get_settings
from lms.web.mail import reset_message, send
from lms.worker import app


@app.task(name="web.send_password_reset", bind=True, max_retries=5,
          autoretry_for=(smtplib.SMTPException, OSError), retry_backoff=True)
def send_password_reset(self: Any, to: str, first_name: str, language: str,
                        link: str) -> None:
    settings = get_settings()
    send(settings, reset_message(settings, to=to, first_name=first_name, language=language,
                                 link=link))
