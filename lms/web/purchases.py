"""Portal pages of buying miles and status (lms.purchases): the price bands, the status
offers within reach, the member's purchases, and "pay" links to the payment provider.

Starting a purchase is a POST that answers with a redirect back here, where the pending
purchase shows its payment link: the provider's page is another origin, and the pages'
Content-Security-Policy allows forms to submit only to this site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from babel.numbers import format_currency, get_currency_precision
from litestar import Controller, Request, Response, get, post
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.clock import utcnow
from lms.errors import LmsError
from lms.purchases.models import Purchase
from lms.purchases.rules import MILES, STATUS, MileRules
from lms.purchases.schemas import StatusOffers
from lms.purchases.service import PurchaseService, new_reference
from lms.web import i18n
from lms.web.context import MEMBER, page, redirect, signed_in
from lms.web.forms import Form, message, read
from lms.web.i18n import N_, gettext

PURCHASE_STATUS: dict[str, str] = {
    "pending": N_("Waiting for payment"),
    "completed": N_("Completed"),
    "canceled": N_("Canceled"),
    "expired": N_("Payment time ran out"),
    "rejected": N_("Rejected"),
}
LISTED = 10


def money(amount_minor: int, currency: str) -> str:
    exponent = get_currency_precision(currency)
    return format_currency(amount_minor / 10**exponent, currency,
                           locale=i18n.babel_locale(i18n.current()))


def purchase_status(status: str) -> str:
    return gettext(PURCHASE_STATUS[status]) if status in PURCHASE_STATUS else status


@dataclass
class Shop:
    miles: MileRules | None
    offers: StatusOffers | None
    purchases: list[Purchase]
    unavailable: str | None = None


def service(session: AsyncSession, request: Request[Any, Any, Any]) -> PurchaseService:
    state = request.app.state
    return PurchaseService(session, state.system_accounts, state.settings)


class PortalPurchasesController(Controller):
    path = "/buy"
    opt = {"realm": MEMBER}

    @get("", name="portal.buy")
    async def shop(self, request: Request[Any, Any, Any],
                   started: Annotated[str | None, QueryParameter(max_length=20)] = None
                   ) -> Response[Any]:
        return await self.render(request, Form({}), started=bool(started))

    async def render(self, request: Request[Any, Any, Any], form: Form, *,
                     started: bool = False, status: int = 200) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id

        async def work(session: AsyncSession) -> Shop:
            purchases = service(session, request)
            bought = sorted(await purchases.list_of(member_id, MILES, LISTED)
                            + await purchases.list_of(member_id, STATUS, LISTED),
                            key=lambda p: p.created_at, reverse=True)[:LISTED]
            shop = Shop(None, None, bought)
            try:
                shop.miles = await purchases.mile_rules(utcnow())
                shop.offers = await purchases.offers(member_id)
            except LmsError as exc:
                shop.unavailable = message(exc.code, exc.title)
            return shop

        shop = await request.app.state.db.transaction(work)
        return page(request, "portal/buy.html", status=status, shop=shop, form=form,
                    started=started, money=money, purchase_status=purchase_status,
                    member=ctx.member)

    @post("/miles")
    async def buy_miles(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        form = await read(request)
        raw = form.get("miles").replace(" ", "").replace(",", "").replace("\u00a0", "")
        if not raw.isdigit() or not 0 < int(raw) <= 100_000_000:
            form.errors["miles"] = message("invalid_field")
            return await self.render(request, form, status=422)
        reference = new_reference(MILES)  # once per request: a retried unit of work reuses it
        try:
            await request.app.state.db.transaction(
                lambda s: service(s, request).buy_miles(member_id, int(raw), reference))
        except LmsError as exc:
            form.errors["miles"] = message(exc.code, exc.detail)
            return await self.render(request, form, status=exc.status if exc.status < 500
                                     else 503)
        return redirect(request, "/buy?started=miles")

    @post("/status")
    async def buy_status(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        form = await read(request)
        tier = form.get("tier").strip().upper()[:32]
        reference = new_reference(STATUS)
        try:
            await request.app.state.db.transaction(
                lambda s: service(s, request).buy_status(member_id, tier, reference))
        except LmsError as exc:
            form.problem = message(exc.code, exc.title)
            return await self.render(request, form, status=exc.status if exc.status < 500
                                     else 503)
        return redirect(request, "/buy?started=status")
