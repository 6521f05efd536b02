"""The agent console at ``/console``: staff sign-in and member search (the member page,
adjustments, approvals and the audit log are in the ``console_*`` modules beside this one).

Staff sign in with their lms.auth account (the same throttling as the API); the console is
for agents, supervisors and admins. Reading and changing members goes through the domain
services; the console only shows and forwards.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.auth.service import AccountDisabled, AuthService, Verified
from lms.callcentre.audit import StaffContext
from lms.callcentre.search import SEPARATORS, SearchQuery, SearchService
from lms.errors import LmsError
from lms.web import i18n
from lms.web.console_staff import (
    CONSOLE_ROLES,
    NotConsoleRole,
    acting_staff,
    console_message,
    members,
    staff_signed_in,
)
from lms.web.context import (
    LANGUAGE_COOKIE,
    STAFF,
    context,
    local_path,
    page,
    redirect,
    session_cookie,
)
from lms.web.forms import Form, read
from lms.web.portal import end_session, open_session, refusal_status

Q = Annotated[str | None, QueryParameter(max_length=500)]
NextQ = Annotated[str | None, QueryParameter(name="next", max_length=500)]
FOUND = 20


class ConsoleController(Controller):
    path = "/console"
    opt = {"realm": STAFF}

    @get("/sign-in", name="console.sign_in")
    async def sign_in_page(self, request: Request[Any, Any, Any],
                           next_: NextQ = None,
                           done: Q = None) -> Response[Any]:
        if context(request).session is not None:
            return redirect(request, "/console")
        return page(request, "console/sign_in.html", form=Form({}), next=next_ or "",
                    done=done)

    @post("/sign-in")
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = context(request)
        form = await read(request)
        target = local_path(form.get("next"), "/console")
        if not target.startswith("/console"):
            target = "/console"
        if not form.require("email", "password"):
            return page(request, "console/sign_in.html", status=422, form=form, next=target,
                        done=None)

        async def work(session: AsyncSession) -> tuple[Verified, str | None]:
            verified = await AuthService(session, ctx.settings).staff_verify(
                form.get("email"), form.get("password"))
            if verified.principal is not None \
                    and verified.principal.role not in CONSOLE_ROLES:
                verified = Verified(refusal=NotConsoleRole())
            return await open_session(session, request, verified)

        verified, token = await request.app.state.db.transaction(work)
        if verified.refusal is not None or token is None:
            refusal = verified.refusal or AccountDisabled()
            form.refuse(refusal)
            form.values.pop("password", None)
            response = page(request, "console/sign_in.html", status=refusal_status(refusal),
                            form=form, next=target, done=None)
            response.headers.update(refusal.headers)
            return response
        ctx.cookie(session_cookie(ctx.settings, STAFF), token)
        return redirect(request, target)

    @post("/sign-out")
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await end_session(request, context(request), STAFF, "/console/sign-in",
                                 everywhere=False)

    @post("/sign-out-everywhere")
    async def sign_out_everywhere(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await end_session(request, staff_signed_in(request), STAFF,
                                 "/console/sign-in", everywhere=True)

    @post("/language")
    async def language(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The language switcher of the console's pages: a staff session's CSRF token is
        not the portal's, so the console has its own (the same cookie as the portal's)."""
        ctx = context(request)
        form = await read(request)
        ctx.cookie(LANGUAGE_COOKIE, i18n.language_of(form.get("lang")) or i18n.DEFAULT,
                   max_age=365 * 24 * 3600)
        target = local_path(form.get("next"), "/console")
        return redirect(request, target if target.startswith("/console") else "/console")

    @get("", name="console.home")
    async def home(self, request: Request[Any, Any, Any],
                   q: Annotated[str | None, QueryParameter(max_length=320)] = None
                   ) -> Response[Any]:
        staff = acting_staff(request)
        query = " ".join((q or "").split())
        found: list[Member] = []
        problem = None
        status = 200
        if query:
            try:
                found = await request.app.state.db.transaction(
                    lambda s: find_members(s, request, staff, query))
            except LmsError as exc:
                problem = console_message(exc)
                status = refusal_status(exc)
        return page(request, "console/home.html", status=status, q=query, found=found,
                    problem=problem, limit=FOUND)


async def find_members(session: AsyncSession, request: Request[Any, Any, Any],
                       staff: StaffContext, text: str) -> list[Member]:
    """What the agent typed, read as the caller would give it: an e-mail; a number (a card,
    else a ticket, or a phone number with its country code); otherwise a name ("Ada
    Lovelace", "Lovelace, Ada" or a last-name prefix). Each search is the call centre's
    SearchService, so each is in the audit log."""
    compact = SEPARATORS.sub("", text)
    if "@" in text:
        queries = [SearchQuery(email=text)]
    elif compact.startswith("+") and compact[1:].isdigit():
        queries = [SearchQuery(phone=text)]
    elif compact.isdigit():
        queries = [SearchQuery(card_number=text), SearchQuery(ticket_number=text)]
        if compact.startswith("00"):
            queries.append(SearchQuery(phone=text))
    else:
        queries = [SearchQuery(name=text)]
    service = SearchService(session, staff)
    by_card = members(session, request).by_card
    for query in queries:
        hits = (await service.search(query, cursor=None, limit=FOUND)).items
        if hits:
            found = [await by_card(h.card_number) for h in hits]
            return [m for m in found if m is not None]
    return []
