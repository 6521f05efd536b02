"""The password-reset e-mail: composed in the member's language, sent over SMTP.

With no ``LMS_SMTP_HOST`` (the demo) the mail is written to the log instead, link included, so
that a newcomer can follow it from the worker's output.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from lms.settings import Settings
from lms.web import i18n

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 30


def reset_message(settings: Settings, *, to: str, first_name: str, language: str,
                  link: str) -> EmailMessage:
    with i18n.using(language):
        subject = i18n.gettext("Reset your password")
        body = i18n.gettext(
            "Hello %(name)s,\n\nsomeone (we hope you) asked to reset the password of your "
            "LMS Miles account. Follow this link within an hour to choose a new one:\n\n"
            "%(link)s\n\nThe link works once. If you did not ask for it, ignore this "
            "message: your password stays as it is.\n") % {"name": first_name, "link": link}
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    if not settings.smtp_host:
        log.warning("LMS_SMTP_HOST is not set; the mail to %s is not sent:\n%s",
                    message["To"], message.get_content())
        return
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                      timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        smtp.send_message(message)
