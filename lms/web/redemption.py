"""Portal page of one-time redemption codes (lms.redemption.ConsentService): a code that lets
a partner spend the member's miles (or, for the head of a family pool, the pool's), shown
once with its expiry, and the state of the member's codes.

The code is in the answer to the POST and nowhere else: it is stored only as a hash, and
the page is never cached (``Cache-Control: no-store``), so reloading asks for a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from lms.errors import LmsError
from lms.family.service import FamilyService
from lms.redemption.schemas import (
    RedemptionCodeOut,
    RedemptionCodeRequest,
    RedemptionCodeStatus,
)
from lms.redemption.service import ConsentService
from lms.web.context import MEMBER, page, signed_in
from lms.web.forms import Form, convert, read


@dataclass
class CodeDesk:
    status: RedemptionCodeStatus
    pool_head: bool
    pool_available: int | None


class PortalRedemptionCodeController(Controller):
    path = "/redemption-code"
    opt = {"realm": MEMBER}

    @get("", name="portal.redemption_code")
    async def desk(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await self.render(request, Form({}))

    async def render(self, request: Request[Any, Any, Any], form: Form, *,
                     issued: RedemptionCodeOut | None = None, from_pool: bool = False,
                     status: int = 200) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        state = request.app.state

        async def work(session: AsyncSession) -> CodeDesk:
            codes = await ConsentService(session, state.settings).status(member_id)
            view = await FamilyService(session, state.system_accounts).view(member_id)
            head = view.role == "head" and view.pool is not None
            return CodeDesk(codes, head,
                            view.pool.balance.available if head and view.pool else None)

        desk = await state.db.transaction(work)
        return page(request, "portal/redemption_code.html", status=status, desk=desk,
                    form=form, issued=issued, from_pool=from_pool,
                    ttl_minutes=max(1, state.settings.redemption_code_ttl_seconds // 60),
                    member=ctx.member)

    @post("")
    async def issue(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        settings = ctx.settings
        form = await read(request)
        from_pool = form.get("fromPool") == "1"
        partner = form.optional("partnerCode")
        data = convert(form, {"partnerCode": partner.lower() if partner else None,
                              "fromPool": from_pool}, RedemptionCodeRequest)
        if data is None:
            return await self.render(request, form, status=422)
        try:
            issued: RedemptionCodeOut = await request.app.state.db.transaction(
                lambda s: ConsentService(s, settings).issue(
                    member_id, data.partner_code, from_pool=data.from_pool))
        except LmsError as exc:
            form.refuse(exc)
            return await self.render(request, form,
                                     status=exc.status if 400 <= exc.status < 500 else 400)
        return await self.render(request, Form({}), issued=issued, from_pool=from_pool)
