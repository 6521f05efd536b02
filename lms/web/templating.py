"""Jinja2 pages: one sandbox-free environment (templates are ours, not user-written), autoescaped,
with gettext bound to the language of the request being rendered (lms.web.i18n)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from lms.web import i18n

TEMPLATES = Path(__file__).parent / "templates"


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def number(value: int | float | None) -> str:
    if value is None:
        return ""
    return format_decimal(value, locale=i18n.babel_locale(i18n.current()))


def day(value: date | datetime | None, tz: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(_zone(tz)).date()
    return format_date(value, format="medium", locale=i18n.babel_locale(i18n.current()))


def moment(value: datetime | None, tz: str | None = None) -> str:
    if value is None:
        return ""
    return format_datetime(value.astimezone(_zone(tz)), format="short",
                           locale=i18n.babel_locale(i18n.current()))


def percent(part: int, whole: int) -> int:
    if whole <= 0:
        return 100
    return max(0, min(100, part * 100 // whole))


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(number=number, day=day, moment=moment)
    env.globals.update(percent=percent, native_names=i18n.NATIVE_NAMES,
                       languages=i18n.LANGUAGES)
    return env


ENV = make_environment()


def render(template: str, language: str, context: dict[str, Any]) -> str:
    """Render synchronously: the language is bound for exactly this render."""
    with i18n.using(language):
        return ENV.get_template(template).render(**context)
