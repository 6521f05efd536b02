"""The audit log in the console (``/console/audit``): the call centre's AuditLog search with
filters (actor, member card, action, a range of UTC days), newest first, a page at a time.
For supervisors and admins, like ``GET /v1/staff/audit``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.callcentre.audit import AuditLog
from lms.callcentre.schemas import AuditPage
from lms.errors import LmsError
from lms.web.console_member import staff_names
from lms.web.console_staff import SUPERVISOR_ROLES, acting_staff, console_message
from lms.web.context import STAFF, page
from lms.web.forms import Form, message
from lms.web.i18n import N_, gettext
from lms.web.portal import refusal_status

PAGE = 50
ACTOR = re.compile(r"(?:[a-z]{1,16}:)?[0-9]{1,18}")
CARD = re.compile(r"[0-9A-Za-z]{1,32}")
ACTION = re.compile(r"[a-z_]{1,30}(?:\.[a-z_]{1,30}){0,3}")
Text = Annotated[str | None, QueryParameter(max_length=100)]
# Actions the call centre records, offered as suggestions in the filter.
KNOWN_ACTIONS = (
    "adjustment.post", "adjustment.request", "adjustment.approve", "adjustment.reject",
    "member.view", "member.statement.view", "member.search", "member.lock", "member.unlock",
    "member.merge", "member.merge_into", "entry.reverse", "reason_code.create",
    "reason_code.activate", "reason_code.deactivate", "adjustment_limit.set",
)


@dataclass
class Filters:
    actor: str | None = None
    card: str | None = None
    action: str | None = None
    start: date | None = None
    end: date | None = None

    def query(self, cursor: str | None = None) -> str:
        values = {"actor": self.actor, "card": self.card, "action": self.action,
                  "from": self.start.isoformat() if self.start else None,
                  "to": self.end.isoformat() if self.end else None, "cursor": cursor}
        return urlencode({k: v for k, v in values.items() if v})

    @property
    def since(self) -> datetime | None:
        return None if self.start is None else datetime.combine(self.start, time(), UTC)

    @property
    def until(self) -> datetime | None:
        """``to`` is the last day shown; the service's bound is exclusive."""
        return None if self.end is None else \
            datetime.combine(self.end + timedelta(days=1), time(), UTC)


def a_day(form: Form, name: str) -> date | None:
    raw = form.get(name).strip()
    if not raw:
        return None
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    form.errors[name] = gettext(N_("Enter a date as YYYY-MM-DD."))
    return None


def filters_of(form: Form) -> Filters:
    """The filters, with an error beside each one that cannot be used."""
    found = Filters()
    for name, pattern in (("actor", ACTOR), ("card", CARD), ("action", ACTION)):
        value = form.get(name).strip()
        if value and not pattern.fullmatch(value):
            form.errors[name] = message("invalid_field")
        elif value:
            setattr(found, name, value)
    found.start, found.end = a_day(form, "from"), a_day(form, "to")
    if found.start and found.end and found.end < found.start:
        form.errors["to"] = gettext(N_("The end date is before the start date."))
    return found


class ConsoleAuditController(Controller):
    path = "/console/audit"
    opt = {"realm": STAFF}

    @get("", name="console.audit")
    async def audit(self, request: Request[Any, Any, Any], actor: Text = None,
                    card: Text = None, action: Text = None,
                    from_: Annotated[str | None, QueryParameter(name="from",
                                                                max_length=20)] = None,
                    to: Annotated[str | None, QueryParameter(max_length=20)] = None,
                    cursor: Annotated[str | None, QueryParameter(max_length=300)] = None
                    ) -> Response[Any]:
        acting_staff(request, SUPERVISOR_ROLES)
        form = Form({k: v for k, v in (("actor", actor), ("card", card), ("action", action),
                                       ("from", from_), ("to", to)) if v is not None})
        filters = filters_of(form)
        found = AuditPage(items=[], next_cursor=None)
        names: dict[str, str] = {}
        status = 200
        if form.errors:
            status = 422
        else:
            async def work(session: AsyncSession) -> tuple[AuditPage, dict[str, str]]:
                result = await AuditLog(session).search(
                    actor=filters.actor, action=filters.action,
                    target=f"member:{filters.card}" if filters.card else None,
                    since=filters.since, until=filters.until, cursor=cursor, limit=PAGE)
                ids = {r.actor_id for r in result.items
                       if r.actor_type == "staff" and r.actor_id}
                return result, await staff_names(session, request, ids)

            try:
                found, names = await request.app.state.db.transaction(work)
            except LmsError as exc:
                form.problem = console_message(exc)
                status = refusal_status(exc)
        return page(request, "console/audit.html", status=status, form=form,
                    filters=filters, records=found.items, next_cursor=found.next_cursor,
                    cursor=cursor, names=names, actions=KNOWN_ACTIONS)
