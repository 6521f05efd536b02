"""The console's 360° member page (``/console/members/{id}``) from the call centre's
ProfileService, with the adjustment form and locking and unlocking the member.

Every view goes through ``ProfileService.view``, so each is in the audit log like a view
through the API. Locking and unlocking call ``MemberOperations.set_locked``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.schemas import BalanceResponse
from lms.auth.service import AuthService, StaffNotFound
from lms.callcentre.adjustments import AdjustmentService
from lms.callcentre.audit import StaffContext
from lms.callcentre.models import ReasonCode
from lms.callcentre.operations import MemberOperations
from lms.callcentre.profile import ProfileService
from lms.callcentre.schemas import Member360
from lms.errors import LmsError
from lms.web.console_staff import acting_staff, can_supervise, console_message, members
from lms.web.context import STAFF, context, page, redirect
from lms.web.forms import Form, message, read
from lms.web.i18n import N_, gettext
from lms.web.portal import CLAIM_STATUS, UNIT_LABELS, kind_label, refusal_status

MemberId = Annotated[int, PathParameter(ge=1)]
Done = Annotated[str | None, QueryParameter(max_length=40)]
REASON_MAX = 1000
# Units an agent may adjust (lms.callcentre.schemas.AdjustmentRequest.unit).
ADJUSTABLE_UNITS = ("MILES", "STATUS_MILES")
# The adjustment form's one-time key (see lms.web.console_adjustments).
FORM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")

ADJUSTMENT_STATUS: dict[str, str] = {
    "posted": N_("Posted"),
    "pending_approval": N_("Waiting for a supervisor"),
    "rejected": N_("Rejected"),
}
PENDING_REASON: dict[str, str] = {
    "per_adjustment_limit": N_("above the limit per adjustment"),
    "daily_limit": N_("above the daily limit"),
}
MEMBER_STATUS: dict[str, str] = {
    "active": N_("Active"),
    "locked": N_("Locked"),
    "closed": N_("Closed"),
}
HOLD_STATUS: dict[str, str] = {
    "pending": N_("Pending"),
    "captured": N_("Captured"),
    "voided": N_("Voided"),
    "expired": N_("Expired"),
}
FAMILY_ROLE: dict[str, str] = {
    "head": N_("Head of the pool"),
    "member": N_("Pool member"),
}
# What the page says after a form posted and redirected back (?done=...).
DONE: dict[str, str] = {
    "posted": N_("The adjustment is posted."),
    "pending": N_("The adjustment is above your limit: it waits for a supervisor's "
                  "approval."),
    "locked": N_("The member is locked."),
    "unlocked": N_("The member is unlocked."),
}


def label(labels: dict[str, str], value: str | None) -> str:
    if value is None:
        return ""
    return gettext(labels[value]) if value in labels else value


@dataclass
class MemberPage:
    view: Member360
    balance: BalanceResponse
    reason_codes: list[ReasonCode]
    limit: int | None
    staff_names: dict[str, str]


async def staff_names(session: AsyncSession, request: Request[Any, Any, Any],
                      ids: set[str]) -> dict[str, str]:
    """Names of the staff users behind the ids an audit record or adjustment carries."""
    auth = AuthService(session, request.app.state.settings)
    names: dict[str, str] = {}
    for ident in sorted(ids):
        if not ident.isdigit():
            continue
        try:
            names[ident] = (await auth.get_staff(int(ident))).name
        except StaffNotFound:
            continue
    return names


async def load_member_page(session: AsyncSession, request: Request[Any, Any, Any],
                           staff: StaffContext, member_id: int) -> MemberPage:
    state = request.app.state
    service = members(session, request)
    member = await service.get(member_id)
    view = await ProfileService(session, state.settings, state.system_accounts, staff).view(
        member.card_number)
    adjustments = AdjustmentService(session, state.system_accounts, staff)
    limit = next((r.per_adjustment for r in await adjustments.limits()
                  if r.role == staff.role), None)
    ids = {str(a.requested_by) for a in view.adjustments} \
        | {str(a.decided_by) for a in view.adjustments if a.decided_by is not None} \
        | {r.actor_id for r in view.audit_trail if r.actor_type == "staff" and r.actor_id}
    return MemberPage(view=view, balance=await service.balance(member_id),
                      reason_codes=await adjustments.reason_codes(active_only=True),
                      limit=limit, staff_names=await staff_names(session, request, ids))


def form_key_of(form: Form) -> str:
    """The key the adjustment form is rendered with: the one it was sent with after an
    error (nothing was stored under it), a new one otherwise."""
    sent = form.get("formKey")
    return sent if FORM_KEY.fullmatch(sent) else secrets.token_urlsafe(24)


async def render_member(request: Request[Any, Any, Any], member_id: int, *,
                        adjust: Form | None = None, lock: Form | None = None,
                        done: str | None = None, status: int = 200) -> Response[Any]:
    staff = acting_staff(request)
    try:
        data = await request.app.state.db.transaction(
            lambda s: load_member_page(s, request, staff, member_id))
    except LmsError as exc:
        return page(request, "error.html", status=refusal_status(exc),
                    title=console_message(exc), code=exc.code)
    adjust = adjust or Form({"unit": "MILES"})
    return page(request, "console/member.html", status=status, p=data, m=data.view.profile,
                adjust=adjust, form_key=form_key_of(adjust), lock=lock or Form({}),
                done=gettext(DONE[done]) if done in DONE else None,
                supervisor=can_supervise(context(request)),
                unit_options=[(u, label(UNIT_LABELS, u)) for u in ADJUSTABLE_UNITS],
                code_options=[("", gettext("Choose a reason"))] + [
                    (r.code, f"{r.code} — {r.description}") for r in data.reason_codes],
                unit_label=lambda u: label(UNIT_LABELS, u), kind_label=kind_label,
                claim_status=lambda s: label(CLAIM_STATUS, s),
                adjustment_status=lambda s: label(ADJUSTMENT_STATUS, s),
                pending_reason=lambda s: label(PENDING_REASON, s),
                member_status=lambda s: label(MEMBER_STATUS, s),
                hold_status=lambda s: label(HOLD_STATUS, s),
                family_role=lambda s: label(FAMILY_ROLE, s))


def free_text(form: Form, name: str) -> str | None:
    """A reason or note: required, at most 1000 characters, printable (line breaks allowed);
    otherwise an error beside the field."""
    value = form.get(name).strip()
    if not value:
        form.errors[name] = message("required")
    elif len(value) > REASON_MAX or any(
            not c.isprintable() and c not in "\r\n\t" for c in value):
        form.errors[name] = message("invalid_field")
    else:
        return value
    return None


class ConsoleMemberController(Controller):
    path = "/console/members"
    opt = {"realm": STAFF}

    @get("/{member_id:int}", name="console.member")
    async def member(self, request: Request[Any, Any, Any], member_id: MemberId,
                     done: Done = None) -> Response[Any]:
        return await render_member(request, member_id, done=done)

    @post("/{member_id:int}/lock")
    async def lock(self, request: Request[Any, Any, Any],
                   member_id: MemberId) -> Response[Any]:
        return await self.set_locked(request, member_id, True)

    @post("/{member_id:int}/unlock")
    async def unlock(self, request: Request[Any, Any, Any],
                     member_id: MemberId) -> Response[Any]:
        return await self.set_locked(request, member_id, False)

    async def set_locked(self, request: Request[Any, Any, Any], member_id: int,
                         locked: bool) -> Response[Any]:
        staff = acting_staff(request)
        form = await read(request)
        reason = free_text(form, "reason")
        if reason is None:
            return await render_member(request, member_id, lock=form, status=422)
        state = request.app.state

        async def work(session: AsyncSession) -> None:
            member = await members(session, request).get(member_id)
            await MemberOperations(session, state.settings, state.system_accounts,
                                   staff).set_locked(member.card_number, locked, reason)

        try:
            await state.db.transaction(work)
        except LmsError as exc:
            form.problem = console_message(exc)
            return await render_member(request, member_id, lock=form,
                                       status=refusal_status(exc))
        return redirect(request, f"/console/members/{member_id}?done="
                                 + ("locked" if locked else "unlocked"))
