"""The agent console at ``/console``: staff sign-in, member search and the member page.

Staff sign in with their lms.auth account (the same throttling as the API); the console is
for agents, supervisors and admins. Reading and changing members goes through the domain
services; the console only shows and forwards.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.accounts.service import MemberService
from lms.auth.principal import Role
from lms.auth.service import AccountDisabled, AuthService, Verified
from lms.claims.service import ClaimService
from lms.errors import Forbidden, LmsError
from lms.ledger.types import Unit
from lms.tiers.service import TierService
from lms.web.context import (
    STAFF,
    WebContext,
    context,
    local_path,
    page,
    redirect,
    session_cookie,
)
from lms.web.errors import SignInRequired
from lms.web.forms import Form, read
from lms.web.portal import CLAIM_STATUS, KIND_LABELS, kind_label, open_session, refusal_status
from lms.web.service import WebSessionService

Q = Annotated[str | None, QueryParameter(max_length=500)]
NextQ = Annotated[str | None, QueryParameter(name="next", max_length=500)]
FromQ = Annotated[str | None, QueryParameter(name="from", max_length=20)]
CONSOLE_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
RECENT_LINES = 20


class NotConsoleRole(Forbidden):
    code = "not_allowed"
    title = "Your role does not use the agent console"


def staff_signed_in(request: Request[Any, Any, Any]) -> WebContext:
    ctx = context(request)
    if ctx.session is None:
        raise SignInRequired(next=request.url.path)
    return ctx


def members(session: AsyncSession, request: Request[Any, Any, Any]) -> MemberService:
    state = request.app.state
    return MemberService(session, state.settings, state.system_accounts)


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
        ctx = context(request)
        token = ctx.session_token
        if token:
            await request.app.state.db.transaction(
                lambda s: WebSessionService(s, ctx.settings).close(token))
        ctx.forget(session_cookie(ctx.settings, STAFF))
        return redirect(request, "/console/sign-in?done=signed-out")

    @post("/sign-out-everywhere")
    async def sign_out_everywhere(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = staff_signed_in(request)
        principal = ctx.principal
        assert principal is not None
        await request.app.state.db.transaction(
            lambda s: WebSessionService(s, ctx.settings).close_all(principal))
        ctx.forget(session_cookie(ctx.settings, STAFF))
        return redirect(request, "/console/sign-in?done=signed-out-everywhere")

    @get("", name="console.home")
    async def home(self, request: Request[Any, Any, Any],
                   q: Annotated[str | None, QueryParameter(max_length=320)] = None
                   ) -> Response[Any]:
        staff_signed_in(request)
        query = (q or "").strip()
        found: list[Member] = []
        if query:
            found = await request.app.state.db.transaction(
                lambda s: self.search(s, request, query))
        return page(request, "console/home.html", q=query, found=found)

    async def search(self, session: AsyncSession, request: Request[Any, Any, Any],
                     query: str) -> list[Member]:
        service = members(session, request)
        member = await (service.by_email(query) if "@" in query else service.by_card(query))
        return [member] if member is not None else []

    @get("/members/{member_id:int}", name="console.member")
    async def member(self, request: Request[Any, Any, Any],
                     member_id: Annotated[int, PathParameter()]) -> Response[Any]:
        staff_signed_in(request)

        async def work(session: AsyncSession) -> dict[str, Any]:
            service = members(session, request)
            member = await service.get(member_id)
            return {
                "member": member,
                "balance": await service.balance(member_id),
                "tier": await TierService(session).status(member_id),
                "claims": await ClaimService(session).list(member_id),
                "lines": (await service.statement(member_id, unit=Unit.MILES, cursor=None,
                                                  limit=RECENT_LINES)).lines,
            }

        try:
            view = await request.app.state.db.transaction(work)
        except LmsError as exc:
            return page(request, "error.html", status=refusal_status(exc),
                        title=exc.title, code=exc.code)
        return page(request, "console/member.html", statuses=CLAIM_STATUS,
                    kinds=KIND_LABELS, kind_label=kind_label, **view)
