"""Portal page of the family pool (lms.family): create a pool, invite by card number, answer
invitations, see members and contributions, leave, remove a member and dissolve.

Every rule is FamilyService's; this module only turns forms into its calls and its refusals
into messages. Leaving, removing and dissolving go through a confirmation page first that
says what each member would take (lms.family.shares, the same arithmetic the service uses;
the service recomputes it under its locks when the button is pressed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.errors import LmsError
from lms.family.schemas import FamilyOut, InvitationCreate, PoolMemberOut, PoolOut
from lms.family.service import FamilyService, FamilyTerms
from lms.family.shares import leaver_share, proportional
from lms.web.context import MEMBER, WebContext, page, redirect, signed_in
from lms.web.forms import Form, convert, message, read
from lms.web.gifts import digits

Id = Annotated[int, Parameter(ge=1, le=2**63 - 1)]
DONE = frozenset({"created", "invited", "joined", "declined", "left", "removed", "dissolved"})
Action = Literal["leave", "remove", "dissolve"]
T = TypeVar("T")


@dataclass
class Share:
    member: PoolMemberOut
    miles: int


def family(session: AsyncSession, request: Request[Any, Any, Any]) -> FamilyService:
    return FamilyService(session, request.app.state.system_accounts)


def shares_on_dissolving(pool: PoolOut) -> list[Share]:
    """As FamilyService.dissolve splits the posted miles: head first, then by member id."""
    ordered = sorted(pool.members, key=lambda m: (m.role != "head", m.member_id))
    split = proportional(pool.balance.posted, [m.contributed for m in ordered])
    return [Share(m, s) for m, s in zip(ordered, split, strict=True)]


def share_on_leaving(pool: PoolOut, member: PoolMemberOut) -> int:
    return leaver_share(pool.balance.available, member.contributed, pool.contributions_total)


def refusal_status(exc: LmsError) -> int:
    return exc.status if 400 <= exc.status < 500 else 400


class PortalFamilyController(Controller):
    path = "/family"
    opt = {"realm": MEMBER}

    @get("", name="portal.family")
    async def pool(self, request: Request[Any, Any, Any],
                   done: Annotated[str | None, QueryParameter(max_length=20)] = None,
                   miles: Annotated[int | None, QueryParameter(ge=0, le=10**12)] = None
                   ) -> Response[Any]:
        return await self.render(request, Form({}),
                                 done=done if done in DONE else None, miles=miles)

    async def view(self, request: Request[Any, Any, Any], ctx: WebContext
                   ) -> tuple[FamilyOut, FamilyTerms]:
        assert ctx.member is not None
        member_id = ctx.member.id

        async def work(session: AsyncSession) -> tuple[FamilyOut, FamilyTerms]:
            service = family(session, request)
            return await service.view(member_id), await service.terms()

        result: tuple[FamilyOut, FamilyTerms] = await request.app.state.db.transaction(work)
        return result

    async def render(self, request: Request[Any, Any, Any], form: Form, *,
                     done: str | None = None, miles: int | None = None,
                     status: int = 200) -> Response[Any]:
        ctx = signed_in(request)
        view, terms = await self.view(request, ctx)
        pool = view.pool
        seats = (pool.max_members - len(pool.members) - len(pool.pending_invitations)
                 if pool else 0)
        return page(request, "portal/family.html", status=status, view=view, pool=pool,
                    form=form, done=done, miles=miles, seats=seats, terms=terms,
                    member=ctx.member)

    async def act(self, request: Request[Any, Any, Any], form: Form,
                  work: Callable[[AsyncSession], Awaitable[T]], done: str, *,
                  miles: Callable[[T], int] | None = None,
                  field: str | None = None) -> Response[Any]:
        """Run one FamilyService call; on success back to the page with what happened, on a
        refusal the page again with the reason (the unit of work rolled back), beside
        ``field`` when the form has one."""
        try:
            result = await request.app.state.db.transaction(work)
        except LmsError as exc:
            if field is not None and exc.status < 500:
                form.errors[field] = message(exc.code, exc.title)
            else:
                form.refuse(exc)
            return await self.render(request, form, status=refusal_status(exc))
        taken = miles(result) if miles is not None else None
        suffix = f"&miles={taken}" if taken is not None else ""
        return redirect(request, f"/family?done={done}{suffix}")

    @post("/create")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        return await self.act(request, Form({}),
                              lambda s: family(s, request).create(member_id), "created")

    @post("/invitations")
    async def invite(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        form = await read(request)
        data = None
        if form.require("cardNumber"):
            data = convert(form, {"cardNumber": digits(form.get("cardNumber"))},
                           InvitationCreate)
        if data is None:
            return await self.render(request, form, status=422)
        card = data.card_number
        return await self.act(request, form,
                              lambda s: family(s, request).invite(member_id, card), "invited",
                              field="cardNumber")

    @post("/invitations/{invitation_id:int}/accept")
    async def accept(self, request: Request[Any, Any, Any], invitation_id: Id
                     ) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        return await self.act(request, Form({}),
                              lambda s: family(s, request).accept(member_id, invitation_id),
                              "joined")

    @post("/invitations/{invitation_id:int}/decline")
    async def decline(self, request: Request[Any, Any, Any], invitation_id: Id
                      ) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        return await self.act(request, Form({}),
                              lambda s: family(s, request).decline(member_id, invitation_id),
                              "declined")

    @get("/confirm", name="portal.family_confirm")
    async def confirm(self, request: Request[Any, Any, Any],
                      action: Annotated[Action, QueryParameter()],
                      member: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)]
                      = None) -> Response[Any]:
        """What leaving, removing or dissolving would do, and the button that does it."""
        ctx = signed_in(request)
        assert ctx.member is not None
        view, _ = await self.view(request, ctx)
        pool = view.pool
        if pool is None:
            return redirect(request, "/family")
        me = next(m for m in pool.members if m.member_id == ctx.member.id)
        target = me
        if action == "remove":
            found = next((m for m in pool.members
                          if m.member_id == member and m.role != "head"), None)
            if found is None or me.role != "head":
                return redirect(request, "/family")
            target = found
        elif (action == "dissolve") != (me.role == "head"):
            return redirect(request, "/family")
        return page(request, "portal/family_confirm.html", action=action, pool=pool,
                    target=target, take=share_on_leaving(pool, target),
                    shares=shares_on_dissolving(pool) if action == "dissolve" else [],
                    member=ctx.member)

    @post("/leave")
    async def leave(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        return await self.act(request, Form({}),
                              lambda s: family(s, request).leave(member_id), "left",
                              miles=lambda out: out.miles_taken)

    @post("/members/{member_id:int}/remove")
    async def remove(self, request: Request[Any, Any, Any], member_id: Id) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        head_id = ctx.member.id
        return await self.act(request, Form({}),
                              lambda s: family(s, request).remove(head_id, member_id),
                              "removed", miles=lambda out: out.miles_taken)

    @post("/dissolve")
    async def dissolve(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        head_id = ctx.member.id
        return await self.act(
            request, Form({}), lambda s: family(s, request).dissolve(head_id), "dissolved",
            miles=lambda out: next((p.miles for p in out.payouts if p.member_id == head_id),
                                   0))
