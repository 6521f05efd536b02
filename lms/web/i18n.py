"""Languages of the web pages: Babel catalogues compiled at start-up, and the choice of language.

The catalogues are ``lms/web/locale/<lang>/LC_MESSAGES/messages.po``; they are compiled in
memory when first used, so no ``.mo`` file can drift from its ``.po``. Regenerate the template
of messages with ``pybabel extract -F lms/web/babel.cfg -o /tmp/messages.pot lms/web`` and merge
it into the catalogues (``pybabel update``); tests/web/test_i18n.py fails on any message
without a Russian translation.
"""

from __future__ import annotations

import contextvars
import io
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "ru")
DEFAULT = "en"
# How each language names itself, for the switcher.
NATIVE_NAMES = {"en": "English", "ru": "Русский"}

_current: contextvars.ContextVar[str] = contextvars.ContextVar("web_language", default=DEFAULT)


@cache
def translations(language: str) -> NullTranslations:
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def language_of(tag: str | None) -> str | None:
    """``en-GB`` -> ``en``; None for a language the pages do not speak."""
    if not tag:
        return None
    language = tag.replace("_", "-").split("-", 1)[0].strip().lower()
    return language if language in LANGUAGES else None


def from_accept_language(header: str | None) -> str:
    """The best of our languages for an Accept-Language header (weights honoured)."""
    if not header:
        return DEFAULT
    weighted: list[tuple[float, str]] = []
    for part in header.split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            weighted.append((quality, tag.strip()))
    preferred = [tag.replace("-", "_") for q, tag in sorted(weighted, key=lambda w: -w[0])
                 if q > 0]
    chosen = negotiate_locale(preferred, list(LANGUAGES), sep="_")
    if chosen is None:
        # negotiate_locale matches whole tags only; "ru-RU" alone should still give "ru".
        chosen = next((lang for tag in preferred if (lang := language_of(tag))), None)
    return chosen or DEFAULT


def babel_locale(language: str) -> Locale:
    try:
        return Locale.parse(language)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT)


@contextmanager
def using(language: str) -> Iterator[None]:
    token = _current.set(language if language in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)


def activate(language: str) -> None:
    """The language of the rest of this request (its task's context): messages made by a
    handler before rendering, such as a form's errors, read in the page's language."""
    _current.set(language if language in LANGUAGES else DEFAULT)


def current() -> str:
    return _current.get()


def gettext(message: str) -> str:
    return translations(_current.get()).ugettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ungettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown."""
    return message
