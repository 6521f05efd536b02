"""Adjustments in the console: the form on the member page and the supervisors' approval
queue (``/console/approvals``), both through the call centre's AdjustmentService, which
decides what posts at once (within the agent's limits), what waits for a supervisor, and
that nobody decides their own request.

The form carries a random ``formKey``: sending the same form twice (a double click, a
reload of the POST) is answered from lms.idempotency with the first result instead of
adjusting twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.callcentre.adjustments import PENDING, AdjustmentService
from lms.callcentre.audit import StaffContext
from lms.callcentre.schemas import AdjustmentOut, AdjustmentRequest
from lms.errors import LmsError
from lms.idempotency.service import IdempotencyService, StoredAnswer, request_hash
from lms.web.console_member import (
    ADJUSTABLE_UNITS,
    FORM_KEY,
    PENDING_REASON,
    MemberId,
    free_text,
    label,
    render_member,
    staff_names,
)
from lms.web.console_staff import (
    SUPERVISOR_ROLES,
    acting_staff,
    console_message,
    console_text,
    members,
)
from lms.web.context import STAFF, page, redirect
from lms.web.forms import Form, message, read
from lms.web.i18n import N_, gettext
from lms.web.portal import UNIT_LABELS, refusal_status

MAX_AMOUNT = 10**9
QUEUE_PAGE = 20
# Digits with an optional sign; thousands may be grouped by spaces or by commas in threes
# ("1,000"), so that "1,5" (a Russian decimal) is refused rather than read as 15.
AMOUNT = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)")
AMOUNT_FIELDS = {"insufficient_miles": "amount", "reason_code_not_found": "reasonCode",
                 "reason_code_inactive": "reasonCode"}
DECIDED: dict[str, str] = {
    "approved": N_("The adjustment is approved and posted."),
    "rejected": N_("The adjustment is rejected."),
}


def signed_amount(form: Form) -> int | None:
    raw = "".join(form.get("amount").split()).replace("\u2212", "-")
    if not raw:
        form.errors["amount"] = message("required")
        return None
    if not AMOUNT.fullmatch(raw):
        form.errors["amount"] = gettext(N_("Enter a whole number of miles, with a minus "
                                           "sign to take miles away."))
        return None
    amount = int(raw.replace(",", ""))
    if amount == 0 or abs(amount) > MAX_AMOUNT:
        form.errors["amount"] = gettext(N_("The amount must not be zero and at most "
                                           "1,000,000,000 either way."))
        return None
    return amount


def adjustment_request(form: Form) -> AdjustmentRequest | None:
    """The form as the API's request, or None with an error beside each wrong field."""
    unit = form.get("unit")
    if unit not in ADJUSTABLE_UNITS:
        form.errors["unit"] = message("invalid_field")
    amount = signed_amount(form)
    code = form.get("reasonCode").strip()
    if not code:
        form.errors["reasonCode"] = message("required")
    elif not re.fullmatch(r"[A-Z][A-Z0-9_]{1,31}", code):
        form.errors["reasonCode"] = console_text("reason_code_not_found")
    note = free_text(form, "note")
    if form.errors or amount is None or note is None:
        return None
    direction: Literal["credit", "debit"] = "credit" if amount > 0 else "debit"
    return AdjustmentRequest(direction=direction, amount=abs(amount), reason_code=code,
                             comment=note, unit="MILES" if unit == "MILES" else "STATUS_MILES")


async def adjust(session: AsyncSession, request: Request[Any, Any, Any], staff: StaffContext,
                 member_id: int, data: AdjustmentRequest, form_key: str | None
                 ) -> dict[str, Any]:
    """Create the adjustment once per form key: a repeated form gets the first answer."""
    keys = IdempotencyService(session)
    scope = staff.principal.key
    key = f"console-adjustment:{form_key}" if form_key else None
    if key is not None:
        fingerprint = request_hash(b"console-adjustment", str(member_id).encode(),
                                   json.dumps([data.unit, data.direction, data.amount,
                                               data.reason_code, data.comment]).encode())
        earlier = await keys.claim(scope, key, fingerprint)
        if earlier is not None:
            stored: dict[str, Any] = json.loads(earlier.body)
            return stored
    member = await members(session, request).get(member_id)
    made = await AdjustmentService(session, request.app.state.system_accounts, staff).create(
        member.card_number, data)
    answer = {"id": made.id, "status": made.status}
    if key is not None:
        await keys.complete(scope, key, StoredAnswer(201, json.dumps(answer).encode()))
    return answer


@dataclass
class QueueItem:
    adjustment: AdjustmentOut
    member: Member | None


@dataclass
class Queue:
    items: list[QueueItem]
    next_cursor: str | None
    names: dict[str, str] = field(default_factory=dict)


async def load_queue(session: AsyncSession, request: Request[Any, Any, Any],
                     staff: StaffContext, cursor: str | None) -> Queue:
    found = await AdjustmentService(session, request.app.state.system_accounts, staff).list(
        status=PENDING, cursor=cursor, limit=QUEUE_PAGE)
    service = members(session, request)
    items = [QueueItem(a, await service.by_card(a.card_number)) for a in found.items]
    names = await staff_names(session, request, {str(a.requested_by) for a in found.items})
    return Queue(items, found.next_cursor, names)


class ConsoleAdjustmentsController(Controller):
    path = "/console"
    opt = {"realm": STAFF}

    @post("/members/{member_id:int}/adjustments")
    async def create(self, request: Request[Any, Any, Any],
                     member_id: MemberId) -> Response[Any]:
        staff = acting_staff(request)
        form = await read(request)
        data = adjustment_request(form)
        if data is None:
            return await render_member(request, member_id, adjust=form, status=422)
        raw_key = form.get("formKey")
        form_key = raw_key if FORM_KEY.fullmatch(raw_key) else None
        try:
            made = await request.app.state.db.transaction(
                lambda s: adjust(s, request, staff, member_id, data, form_key))
        except LmsError as exc:
            where = AMOUNT_FIELDS.get(exc.code)
            if where is not None:
                form.errors[where] = console_message(exc)
            else:
                form.problem = console_message(exc)
            return await render_member(request, member_id, adjust=form,
                                       status=refusal_status(exc))
        done = "pending" if made["status"] == PENDING else "posted"
        return redirect(request, f"/console/members/{member_id}?done={done}")

    @get("/approvals", name="console.approvals")
    async def approvals(self, request: Request[Any, Any, Any],
                        cursor: Annotated[str | None, QueryParameter(max_length=300)] = None,
                        done: Annotated[str | None, QueryParameter(max_length=20)] = None
                        ) -> Response[Any]:
        return await self.render(request, cursor=cursor, done=done)

    async def render(self, request: Request[Any, Any, Any], *, cursor: str | None = None,
                     done: str | None = None, failed: int | None = None,
                     form: Form | None = None, status: int = 200) -> Response[Any]:
        staff = acting_staff(request, SUPERVISOR_ROLES)
        try:
            queue = await request.app.state.db.transaction(
                lambda s: load_queue(s, request, staff, cursor))
        except LmsError as exc:
            return page(request, "error.html", status=refusal_status(exc),
                        title=console_message(exc), code=exc.code)
        return page(request, "console/approvals.html", status=status, queue=queue,
                    cursor=cursor, me=staff.staff_id, failed=failed,
                    form=form or Form({}), blank=Form({}),
                    done=gettext(DECIDED[done]) if done in DECIDED else None,
                    unit_label=lambda u: label(UNIT_LABELS, u),
                    pending_reason=lambda s: label(PENDING_REASON, s))

    @post("/approvals/{adjustment_id:int}")
    async def decide(self, request: Request[Any, Any, Any],
                     adjustment_id: Annotated[int, PathParameter(ge=1)]) -> Response[Any]:
        staff = acting_staff(request, SUPERVISOR_ROLES)
        form = await read(request)
        decision = form.get("decision")
        note = free_text(form, "note")
        if decision not in ("approve", "reject"):
            form.problem = message("invalid_field")
        if note is None or form.problem:
            return await self.render(request, failed=adjustment_id, form=form, status=422)
        system = request.app.state.system_accounts

        async def work(session: AsyncSession) -> AdjustmentOut:
            service = AdjustmentService(session, system, staff)
            assert note is not None
            if decision == "approve":
                return await service.approve(adjustment_id, note)
            return await service.reject(adjustment_id, note)

        try:
            await request.app.state.db.transaction(work)
        except LmsError as exc:
            form.problem = console_message(exc)
            return await self.render(request, failed=adjustment_id, form=form,
                                     status=refusal_status(exc))
        return redirect(request, "/console/approvals?done="
                                 + ("approved" if decision == "approve" else "rejected"))
