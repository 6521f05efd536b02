"""Portal page of gifting miles (lms.gifts): the terms in force, the form, and the gifts the
member sent and received.

A gift form carries a random ``formKey`` made when the page was rendered; the POST runs the
gift (one call of gift_send(), as the API does) under that key in lms.idempotency (scope:
the member), so a double click or a resent form gives one gift, not two, and answers as the
first did.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.service import MemberService
from lms.clock import utcnow
from lms.db import RawConnection
from lms.errors import LmsError
from lms.gifts.schemas import GiftCreate, GiftOut, GiftTermsOut
from lms.gifts.service import GiftService, GiftTerms, gift_refusal, send_gift
from lms.idempotency.service import request_hash, sql_refusal
from lms.ledger.types import Unit
from lms.web.context import MEMBER, page, redirect, signed_in
from lms.web.forms import Form, convert, message, read
from lms.web.i18n import gettext
from lms.web.templating import number

LISTED = 20
FORM_KEY = "formKey"
MAX_MILES = 10**9


@dataclass
class GiftDesk:
    available: int
    terms: GiftTermsOut
    sent: list[GiftOut]
    received: list[GiftOut]
    preview: tuple[int, int] | None


class GiftReceipt(msgspec.Struct):
    """What the confirmation shows of a gift, read from the answer its idempotency key
    stores (the API's GiftOut; before migration 0024, this alone)."""

    id: int
    miles: int
    fee: int


def gifts(session: AsyncSession | RawConnection, request: Request[Any, Any, Any]
          ) -> GiftService:
    return GiftService(session, request.app.state.system_accounts)


def digits(raw: str) -> str:
    """A number as people type it: spaces, commas and no-break spaces between digits."""
    for sep in (" ", ",", "\u00a0", "\u202f"):
        raw = raw.replace(sep, "")
    return raw


def refusal(form: Form, exc: LmsError) -> None:
    """A refusal of the gift service, beside the field it concerns, in the page's language."""
    if exc.code == "gift_limit_exceeded":
        period = exc.extra.get("period")
        remaining = exc.extra.get("remaining")
        if remaining is not None:
            text = (gettext("This gift would exceed your daily gift limit; you may still "
                            "give %(miles)s miles today.") if period == "daily" else
                    gettext("This gift would exceed your yearly gift limit; you may still "
                            "give %(miles)s miles this year.")) % {"miles": number(remaining)}
        else:
            text = gettext("The recipient cannot receive this many gifted miles now.")
        form.errors["miles"] = text
    elif exc.code == "gift_too_small":
        form.errors["miles"] = gettext("A gift is at least %(miles)s miles.") % {
            "miles": number(exc.extra.get("minMiles"))}
    elif exc.code == "insufficient_miles":
        form.errors["miles"] = gettext("You do not have enough miles for this gift and its "
                                       "fee.")
    elif exc.code == "gift_recipient_not_found":
        text = message(exc.code)
        form.errors["recipientCardNumber"] = text
        form.errors["recipientLastName"] = text
    elif exc.code == "idempotency_key_reused":
        form.problem = gettext("This form was already used for another gift; reload the page "
                               "to give again.")
    else:
        form.refuse(exc)


def preview(terms: GiftTerms, raw: str) -> tuple[int, int] | None:
    """(miles, fee) of a gift as typed so far, or None while it is not a gift amount."""
    miles = digits(raw)
    if not miles.isdigit() or len(miles) > 10 \
            or not terms.min_miles <= int(miles) <= MAX_MILES:
        return None
    return int(miles), terms.fee(int(miles))


class PortalGiftsController(Controller):
    path = "/gifts"
    opt = {"realm": MEMBER}

    @get("", name="portal.gifts")
    async def desk(self, request: Request[Any, Any, Any],
                   sent: Annotated[int | None, QueryParameter(ge=1, le=MAX_MILES)] = None,
                   fee: Annotated[int | None, QueryParameter(ge=0, le=MAX_MILES)] = None
                   ) -> Response[Any]:
        return await self.render(request, Form({}), done=(sent, fee) if sent else None)

    async def render(self, request: Request[Any, Any, Any], form: Form, *,
                     done: tuple[int, int | None] | None = None,
                     status: int = 200) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        state = request.app.state

        async def work(session: AsyncSession) -> GiftDesk:
            service = gifts(session, request)
            balance = await MemberService(session, state.settings, state.system_accounts
                                          ).balance(member_id)
            miles = next((b.available for b in balance.balances if b.unit == Unit.MILES), 0)
            return GiftDesk(miles, await service.my_terms(member_id),
                            await service.list(member_id, sent=True, limit=LISTED),
                            await service.list(member_id, sent=False, limit=LISTED),
                            preview(await service.terms(), form.get("miles")))

        desk = await state.db.transaction(work)
        # A fresh key for the next gift; a refused form keeps its own, as nothing was given.
        form.values.setdefault(FORM_KEY, secrets.token_urlsafe(24))
        return page(request, "portal/gifts.html", status=status, desk=desk, form=form,
                    done=done, member=ctx.member)

    @get("/fee", name="portal.gift_fee")
    async def fee(self, request: Request[Any, Any, Any],
                  miles: Annotated[str | None, QueryParameter(max_length=40)] = None
                  ) -> Response[Any]:
        """What a gift of ``miles`` would cost, as htmx asks while the member types."""
        signed_in(request)
        terms = await request.app.state.db.transaction(
            lambda s: gifts(s, request).terms())
        return page(request, "portal/_gift_fee.html", preview=preview(terms, miles or ""))

    @post("")
    async def give(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None and ctx.principal is not None
        member_id = ctx.member.id
        form = await read(request)
        key = form.get(FORM_KEY)
        if not 16 <= len(key) <= 64 or not key.isascii() or not key.isprintable():
            key = secrets.token_urlsafe(24)  # a form without a valid key gets one of its own
        form.values[FORM_KEY] = key
        data = self.parse(form)
        if data is None:
            return await self.render(request, form, status=422)
        scope = ctx.principal.key
        fingerprint = request_hash(b"portal-gift", msgspec.json.encode(data))

        state = request.app.state
        try:
            try:
                row = await send_gift(state.db, state.system_accounts, scope,
                                      f"portal-gift:{key}", fingerprint, member_id, data,
                                      utcnow())
            except asyncpg.PostgresError as exc:
                problem = sql_refusal(exc) or gift_refusal(exc)
                if problem is None:
                    raise
                raise problem from exc
        except LmsError as exc:
            refusal(form, exc)
            return await self.render(request, form,
                                     status=exc.status if 400 <= exc.status < 500 else 400)
        receipt = msgspec.json.decode(bytes(row["response_body"]), type=GiftReceipt)
        return redirect(request, f"/gifts?sent={receipt.miles}&fee={receipt.fee}")

    @staticmethod
    def parse(form: Form) -> GiftCreate | None:
        form.require("recipientCardNumber", "recipientLastName", "miles")
        miles = digits(form.get("miles"))
        if "miles" not in form.errors and (not miles.isdigit() or len(miles) > 10
                                           or not 0 < int(miles) <= MAX_MILES):
            form.errors["miles"] = gettext("Enter a whole number of miles.")
        if not form.ok:
            return None
        return convert(form, {
            "recipientCardNumber": digits(form.get("recipientCardNumber")),
            "recipientLastName": form.get("recipientLastName").strip(),
            "miles": int(miles), "message": form.get("message").strip()}, GiftCreate)
