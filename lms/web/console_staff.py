"""Who may do what in the agent console: the signed-in staff user, the roles of each page
(the same as the call centre's API guards), and the acting staff context that the call
centre's services record in the audit log."""

from __future__ import annotations

from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.service import MemberService
from lms.auth.principal import Role
from lms.callcentre.audit import StaffContext
from lms.errors import Forbidden, LmsError
from lms.web.context import WebContext, context
from lms.web.errors import SignInRequired
from lms.web.forms import MESSAGES, message
from lms.web.i18n import N_, gettext

CONSOLE_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
# The approval queue and the audit log: as lms.callcentre.routes' ``supervisors`` guard.
SUPERVISOR_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})

# Refusals of the call centre's services, by their stable code, in the page's language.
CONSOLE_MESSAGES: dict[str, str] = {
    "member_closed": N_("The membership is closed."),
    "member_not_active": N_("Only an active member can be locked."),
    "member_not_locked": N_("The member is not locked."),
    "reason_code_not_found": N_("Choose a reason code from the list."),
    "reason_code_inactive": N_("This reason code is no longer in use; choose another."),
    "adjustment_not_found": N_("Adjustment not found."),
    "adjustment_not_pending": N_("This adjustment was already decided by someone else."),
    "own_adjustment": N_("Nobody approves or rejects their own adjustment."),
    "account_closed": N_("The member's account is closed."),
    "invalid_cursor": N_("This page link is not valid any more; start from the newest."),
    "idempotency_key_reused": N_("This form was already sent with other values; reload "
                                 "the page and enter them again."),
    "idempotency_request_unfinished": N_("This form is still being handled; wait a moment "
                                         "and reload the page."),
}


def console_text(code: str, fallback: str | None = None) -> str:
    if code in CONSOLE_MESSAGES and code not in MESSAGES:
        return gettext(CONSOLE_MESSAGES[code])
    return message(code, fallback)


def console_message(exc: LmsError) -> str:
    return console_text(exc.code, exc.title)


class NotConsoleRole(Forbidden):
    code = "not_allowed"
    title = "Your role does not use the agent console"


def staff_signed_in(request: Request[Any, Any, Any]) -> WebContext:
    ctx = context(request)
    if ctx.session is None:
        raise SignInRequired(next=request.url.path)
    return ctx


def acting_staff(request: Request[Any, Any, Any],
                 roles: frozenset[Role] = CONSOLE_ROLES) -> StaffContext:
    """The signed-in staff user as the call centre's services see them; a role outside
    ``roles`` is refused (403) before anything is read or changed."""
    ctx = staff_signed_in(request)
    principal = ctx.principal
    assert principal is not None
    if principal.role not in roles:
        raise NotConsoleRole()
    return StaffContext(principal, request.client.host if request.client else None)


def can_supervise(ctx: WebContext) -> bool:
    return ctx.principal is not None and ctx.principal.role in SUPERVISOR_ROLES


def members(session: AsyncSession, request: Request[Any, Any, Any]) -> MemberService:
    state = request.app.state
    return MemberService(session, state.settings, state.system_accounts)
