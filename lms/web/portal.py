"""The member portal: sign-up, sign-in and out, password reset, dashboard, statement (with
CSV), missing-flight claims, profile and password, language.

Paths are at the root of the site (``/``, ``/statement``, ``/claims`` ...; see
docs/web.md). Handlers parse the form, call the domain's service in one unit of work and
render; the rules stay in lms.accounts, lms.tiers, lms.claims and lms.web.service.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.params import QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.accounts.schemas import ProfileUpdate, RegisterRequest, StatementLine
from lms.accounts.service import MemberService
from lms.auth.principal import Principal, Role
from lms.auth.service import Verified
from lms.claims.schemas import ClaimRequest
from lms.claims.service import ClaimService
from lms.errors import LmsError
from lms.ledger.types import EntryKind, Unit
from lms.settings import Settings
from lms.tiers.service import TierService
from lms.web import i18n
from lms.web.context import (
    LANGUAGE_COOKIE,
    MEMBER,
    WebContext,
    context,
    finish,
    local_path,
    page,
    redirect,
    session_cookie,
    signed_in,
)
from lms.web.forms import Form, convert, message, read
from lms.web.i18n import N_, gettext
from lms.web.service import PasswordResetService, WebSessionService
from lms.web.tasks import send_password_reset
from lms.web.wallet import wallet_readiness

log = logging.getLogger(__name__)

# A query parameter of a page: optional, bounded.
Q = Annotated[str | None, QueryParameter(max_length=500)]
NextQ = Annotated[str | None, QueryParameter(name="next", max_length=500)]
FromQ = Annotated[str | None, QueryParameter(name="from", max_length=20)]

PAGE_SIZE = 50
CSV_BATCH = 500
CSV_MAX_LINES = 100_000
RESET_COOKIE = "lms_reset"

KIND_LABELS: dict[str, str] = {
    EntryKind.ACCRUAL: N_("Miles earned"),
    EntryKind.PURCHASE: N_("Miles bought"),
    EntryKind.GIFT: N_("Gift"),
    EntryKind.POOL_TRANSFER: N_("Family pool"),
    EntryKind.TRANSFER: N_("Transfer"),
    EntryKind.CAPTURE: N_("Spent with a partner"),
    EntryKind.REFUND: N_("Refund"),
    EntryKind.REVERSAL: N_("Reversal"),
    EntryKind.ADJUSTMENT: N_("Adjustment"),
    EntryKind.EXPIRY: N_("Expired"),
    EntryKind.STATUS_PURCHASE: N_("Status bought"),
    EntryKind.REDEMPTION: N_("Redemption"),
    EntryKind.MERGE: N_("Accounts merged"),
}
UNIT_LABELS: dict[str, str] = {
    Unit.MILES: N_("Award miles"),
    Unit.STATUS_MILES: N_("Status miles"),
    Unit.SEGMENTS: N_("Segments"),
}
CLAIM_STATUS: dict[str, str] = {
    "pending": N_("Waiting for the airline"),
    "credited": N_("Credited"),
    "rejected": N_("Rejected"),
}


def kind_label(kind: str) -> str:
    return gettext(KIND_LABELS[kind]) if kind in KIND_LABELS else kind


def members(session: AsyncSession, request: Request[Any, Any, Any]) -> MemberService:
    state = request.app.state
    return MemberService(session, state.settings, state.system_accounts)


def client_of(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None,
            request.headers.get("user-agent"))


async def open_session(session: AsyncSession, request: Request[Any, Any, Any],
                       verified: Verified) -> tuple[Verified, str | None]:
    """After a successful password check, in the same unit of work: a new session (never
    the one the browser came with, so a planted cookie is worth nothing)."""
    if verified.principal is None:
        return verified, None
    ctx = context(request)
    sessions = WebSessionService(session, ctx.settings)
    if ctx.session_token:
        await sessions.close(ctx.session_token)
    ip, agent = client_of(request)
    opened = await sessions.open(verified.principal, ip=ip, user_agent=agent)
    return verified, opened.token


def start_session(request: Request[Any, Any, Any], token: str, realm: str, to: str
                  ) -> Response[Any]:
    ctx = context(request)
    ctx.cookie(session_cookie(ctx.settings, realm), token)
    return redirect(request, to)


async def end_session(request: Request[Any, Any, Any], ctx: WebContext, realm: str,
                      sign_in: str, *, everywhere: bool) -> Response[Any]:
    """Sign-out: this browser's session closed (or, ``everywhere``, every session of its
    signed-in principal), its cookie forgotten, and the realm's sign-in page saying so."""
    settings = ctx.settings
    if everywhere:
        principal = ctx.principal
        assert principal is not None
        await request.app.state.db.transaction(
            lambda s: WebSessionService(s, settings).close_all(principal))
    elif token := ctx.session_token:
        await request.app.state.db.transaction(
            lambda s: WebSessionService(s, settings).close(token))
    ctx.forget(session_cookie(settings, realm))
    done = "signed-out-everywhere" if everywhere else "signed-out"
    return redirect(request, f"{sign_in}?done={done}")


def refusal_status(exc: LmsError) -> int:
    return exc.status if 400 <= exc.status < 500 else 400


class PortalPublicController(Controller):
    """Pages for anyone: sign-up, sign-in, password reset, the language switcher."""

    opt = {"realm": MEMBER}

    @get("/sign-in", name="portal.sign_in")
    async def sign_in_page(self, request: Request[Any, Any, Any],
                           next_: NextQ = None,
                           done: Q = None) -> Response[Any]:
        if context(request).session is not None:
            return redirect(request, "/")
        return page(request, "portal/sign_in.html", form=Form({}), next=next_ or "",
                    done=done)

    @post("/sign-in")
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await read(request)
        target = local_path(form.get("next"), "/")
        if not form.require("email", "password"):
            return page(request, "portal/sign_in.html", status=422, form=form, next=target,
                        done=None)

        async def work(session: AsyncSession) -> tuple[Verified, str | None]:
            verified = await members(session, request).verify(form.get("email"),
                                                               form.get("password"))
            return await open_session(session, request, verified)

        verified, token = await request.app.state.db.transaction(work)
        if verified.refusal is not None or token is None:
            assert verified.refusal is not None
            form.refuse(verified.refusal)
            form.values.pop("password", None)
            response = page(request, "portal/sign_in.html",
                            status=refusal_status(verified.refusal), form=form, next=target,
                            done=None)
            response.headers.update(verified.refusal.headers)
            return response
        return start_session(request, token, MEMBER, target)

    @get("/sign-up", name="portal.sign_up")
    async def sign_up_page(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if context(request).session is not None:
            return redirect(request, "/")
        return page(request, "portal/sign_up.html", form=Form({}))

    @post("/sign-up")
    async def sign_up(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = context(request)
        form = await read(request)
        form.require("firstName", "lastName", "email", "password")
        if form.get("password") != form.get("passwordAgain"):
            form.errors["passwordAgain"] = message("passwords_differ")
        data = None
        if form.ok:
            data = convert(form, {
                "email": form.get("email").strip(), "password": form.get("password"),
                "firstName": form.get("firstName"), "lastName": form.get("lastName"),
                "phone": form.optional("phone"), "birthDate": form.optional("birthDate"),
                "locale": ctx.language}, RegisterRequest)
        if data is None or not form.ok:
            return self.sign_up_again(request, form)

        async def work(session: AsyncSession) -> str | None:
            enrolment = await members(session, request).register(data)
            verified = Verified(principal=_principal(enrolment.member))
            return (await open_session(session, request, verified))[1]

        try:
            token = await request.app.state.db.transaction(work)
        except LmsError as exc:
            form.refuse(exc)
            return self.sign_up_again(request, form, refusal_status(exc))
        assert token is not None
        return start_session(request, token, MEMBER, "/?welcome=1")

    def sign_up_again(self, request: Request[Any, Any, Any], form: Form,
                      status: int = 422) -> Response[Any]:
        for secret in ("password", "passwordAgain"):
            form.values.pop(secret, None)
        return page(request, "portal/sign_up.html", status=status, form=form)

    @get("/password/forgot", name="portal.forgot")
    async def forgot_page(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return page(request, "portal/forgot.html", form=Form({}), sent=False)

    @post("/password/forgot")
    async def forgot(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await read(request)
        if not form.require("email"):
            return page(request, "portal/forgot.html", status=422, form=form, sent=False)
        state = request.app.state
        settings: Settings = state.settings
        link = await state.db.transaction(
            lambda s: PasswordResetService(s, settings, state.system_accounts)
            .request(form.get("email")))
        if link is not None:
            url = (settings.public_base_url.rstrip("/") + "/password/reset?token="
                   + quote(link.token))
            try:
                # After the commit: the link must exist before its mail can be followed.
                await asyncio.to_thread(send_password_reset.delay, link.email,
                                        link.first_name,
                                        i18n.language_of(link.locale) or i18n.DEFAULT, url)
            except Exception:  # the answer must not reveal whether a mail was due
                log.exception("could not enqueue the password-reset mail")
        return page(request, "portal/forgot.html", form=Form({}), sent=True)

    @get("/password/reset", name="portal.reset")
    async def reset_page(self, request: Request[Any, Any, Any],
                         token: Q = None) -> Response[Any]:
        ctx = context(request)
        name = session_cookie(ctx.settings, RESET_COOKIE)
        if token:
            # The token moves from the link into a cookie and out of the address bar, so
            # that it is neither in the page, nor in history, nor sent on as a referrer.
            ctx.cookie(name, token[:200], max_age=ctx.settings.password_reset_ttl_seconds)
            return redirect(request, "/password/reset")
        held = request.cookies.get(name)
        if not held:
            return page(request, "portal/reset.html", status=400, form=Form({}),
                        invalid=True)
        state = request.app.state
        try:
            await state.db.transaction(
                lambda s: PasswordResetService(s, ctx.settings, state.system_accounts)
                .check(held))
        except LmsError:
            ctx.forget(name)
            return page(request, "portal/reset.html", status=400, form=Form({}),
                        invalid=True)
        return page(request, "portal/reset.html", form=Form({}), invalid=False)

    @post("/password/reset")
    async def reset(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = context(request)
        form = await read(request)
        name = session_cookie(ctx.settings, RESET_COOKIE)
        held = request.cookies.get(name)
        if not held:
            return page(request, "portal/reset.html", status=400, form=form, invalid=True)
        form.require("password")
        if form.get("password") != form.get("passwordAgain"):
            form.errors["passwordAgain"] = message("passwords_differ")
        if not form.ok:
            return page(request, "portal/reset.html", status=422, form=Form({}, form.errors),
                        invalid=False)
        state = request.app.state
        try:
            await state.db.transaction(
                lambda s: PasswordResetService(s, ctx.settings, state.system_accounts)
                .reset(held, form.get("password")))
        except LmsError as exc:
            refused = Form({})
            refused.refuse(exc)
            invalid = exc.code == "reset_link_invalid"
            if invalid:
                ctx.forget(name)
            return page(request, "portal/reset.html", status=refusal_status(exc),
                        form=refused, invalid=invalid)
        ctx.forget(name)
        ctx.forget(session_cookie(ctx.settings, MEMBER))
        return redirect(request, "/sign-in?done=reset")

    @post("/language")
    async def language(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = context(request)
        form = await read(request)
        chosen = i18n.language_of(form.get("lang")) or i18n.DEFAULT
        ctx.cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600)
        if ctx.member is not None and i18n.language_of(ctx.member.locale) != chosen:
            member_id = ctx.member.id
            await request.app.state.db.transaction(
                lambda s: members(s, request).set_locale(member_id, chosen))
        return redirect(request, local_path(form.get("next"), "/"))


def _principal(member: Member) -> Principal:
    return Principal("member", member.id, Role.MEMBER)


def day_start(value: date, zone: str) -> datetime:
    return datetime.combine(value, time.min, tzinfo=ZoneInfo(zone))


def parse_day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


class StatementFilter:
    """The statement's filters from the query string; unknown values are ignored, not
    errors, so that a hand-edited address still shows a page."""

    def __init__(self, ctx: WebContext, *, unit: str | None, kind: str | None,
                 start: str | None, end: str | None) -> None:
        assert ctx.member is not None
        self.unit = Unit(unit) if unit in set(Unit) else Unit.MILES
        self.kind = kind if kind in set(EntryKind) else None
        self.start = parse_day(start)
        self.end = parse_day(end)
        zone = ctx.member.timezone
        self.since = day_start(self.start, zone) if self.start else None
        self.until = day_start(self.end + timedelta(days=1), zone) if self.end else None

    def query(self) -> str:
        parts = {"unit": str(self.unit), "kind": self.kind or "",
                 "from": self.start.isoformat() if self.start else "",
                 "to": self.end.isoformat() if self.end else ""}
        return "&".join(f"{k}={quote(v)}" for k, v in parts.items() if v)


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula starts with a quote instead."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class PortalController(Controller):
    """Pages of a signed-in member."""

    opt = {"realm": MEMBER}

    @get("/", name="portal.home")
    async def dashboard(self, request: Request[Any, Any, Any],
                        welcome: Q = None) -> Response[Any]:
        ctx = context(request)
        if ctx.session is None:
            return redirect(request, "/sign-in")
        assert ctx.member is not None
        member_id = ctx.member.id

        async def work(session: AsyncSession) -> tuple[Any, Any]:
            balance = await members(session, request).balance(member_id)
            tier = await TierService(session).status(member_id)
            return balance, tier

        balance, tier = await request.app.state.db.transaction(work)
        by_unit = {b.unit: b for b in balance.balances}
        return page(request, "portal/dashboard.html", balance=balance, by_unit=by_unit,
                    tier=tier, welcome=bool(welcome), member=ctx.member,
                    wallet=await wallet_readiness(ctx.settings))

    @get("/statement", name="portal.statement")
    async def statement(self, request: Request[Any, Any, Any], unit: Q = None,
                        kind: Q = None,
                        from_: FromQ = None,
                        to: Q = None, cursor: Q = None) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        filters = StatementFilter(ctx, unit=unit, kind=kind, start=from_, end=to)
        try:
            result = await request.app.state.db.transaction(
                lambda s: members(s, request).statement(
                    member_id, unit=filters.unit, cursor=cursor, limit=PAGE_SIZE,
                    kind=filters.kind, since=filters.since, until=filters.until))
        except LmsError:
            return redirect(request, "/statement?" + filters.query())
        template = ("portal/_statement_rows.html"
                    if request.headers.get("hx-request") == "true" and cursor
                    else "portal/statement.html")
        return page(request, template, lines=result.lines, next_cursor=result.next_cursor,
                    filters=filters, kinds=KIND_LABELS, units=UNIT_LABELS,
                    kind_label=kind_label, member=ctx.member)

    @get("/statement.csv", name="portal.statement_csv")
    async def statement_csv(self, request: Request[Any, Any, Any], unit: Q = None,
                            kind: Q = None,
                            from_: FromQ = None,
                            to: Q = None) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member = ctx.member
        filters = StatementFilter(ctx, unit=unit, kind=kind, start=from_, end=to)
        db = request.app.state.db
        language = ctx.language

        async def rows() -> AsyncIterator[str]:
            out = io.StringIO()
            writer = csv.writer(out)
            with i18n.using(language):
                writer.writerow([gettext("Date"), gettext("Kind"), gettext("Description"),
                                 gettext("Reference"), gettext("Unit"), gettext("Amount"),
                                 gettext("Balance after")])
            cursor: str | None = None
            written = 0
            while written < CSV_MAX_LINES:
                result = await db.transaction(
                    lambda s, before=cursor: members(s, request).statement(
                        member.id, unit=filters.unit, cursor=before, limit=CSV_BATCH,
                        kind=filters.kind, since=filters.since, until=filters.until))
                for line in result.lines:
                    writer.writerow(csv_row(line, member.timezone))
                written += len(result.lines)
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                cursor = result.next_cursor
                if cursor is None:
                    break

        name = f"statement-{member.card_number}-{filters.unit.lower()}.csv"
        response: Response[Any] = Stream(rows(), media_type="text/csv; charset=utf-8",
                                         headers={"Content-Disposition":
                                                  f'attachment; filename="{name}"'})
        return finish(request, response)

    @get("/claims", name="portal.claims")
    async def claims(self, request: Request[Any, Any, Any],
                     filed: Q = None) -> Response[Any]:
        ctx = signed_in(request)
        return await self.claims_page(request, ctx, Form({}), filed=bool(filed))

    async def claims_page(self, request: Request[Any, Any, Any], ctx: WebContext, form: Form,
                          *, filed: bool = False, status: int = 200) -> Response[Any]:
        assert ctx.member is not None
        member_id = ctx.member.id
        claims = await request.app.state.db.transaction(
            lambda s: ClaimService(s).list(member_id))
        return page(request, "portal/claims.html", status=status, claims=claims, form=form,
                    filed=filed, statuses=CLAIM_STATUS, member=ctx.member)

    @post("/claims")
    async def file_claim(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        form = await read(request)
        data = None
        if form.require("ticketNumber", "flightNumber", "flightDate"):
            data = convert(form, {
                "ticketNumber": "".join(form.get("ticketNumber").split()),
                "flightNumber": "".join(form.get("flightNumber").split()),
                "flightDate": form.get("flightDate").strip()}, ClaimRequest)
        if data is None:
            return await self.claims_page(request, ctx, form, status=422)
        try:
            await request.app.state.db.transaction(
                lambda s: ClaimService(s).submit(member_id, data))
        except LmsError as exc:
            form.refuse(exc)
            return await self.claims_page(request, ctx, form, status=refusal_status(exc))
        return redirect(request, "/claims?filed=1")

    @get("/profile", name="portal.profile")
    async def profile(self, request: Request[Any, Any, Any],
                      saved: Q = None) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        m = ctx.member
        form = Form({"firstName": m.first_name, "lastName": m.last_name,
                     "phone": m.phone or "", "locale": m.locale, "timezone": m.timezone})
        return page(request, "portal/profile.html", form=form, password_form=Form({}),
                    saved=saved, member=m)

    @post("/profile")
    async def save_profile(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        form = await read(request)
        data = None
        if form.require("firstName", "lastName", "locale", "timezone"):
            data = convert(form, {
                "firstName": form.get("firstName"), "lastName": form.get("lastName"),
                "phone": form.optional("phone"), "locale": form.get("locale").strip(),
                "timezone": form.get("timezone").strip()}, ProfileUpdate)
        if data is not None:
            try:
                await request.app.state.db.transaction(
                    lambda s: members(s, request).update_profile(member_id, data))
            except LmsError as exc:
                form.refuse(exc)
            else:
                return redirect(request, "/profile?saved=profile")
        return page(request, "portal/profile.html", status=422, form=form,
                    password_form=Form({}), saved=None, member=ctx.member)

    @post("/profile/password")
    async def change_password(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        m = ctx.member
        form = await read(request)
        form.require("currentPassword", "password")
        if form.get("password") != form.get("passwordAgain"):
            form.errors["passwordAgain"] = message("passwords_differ")
        if form.ok:
            try:
                await request.app.state.db.transaction(
                    lambda s: members(s, request).change_password(
                        m.id, form.get("currentPassword"), form.get("password")))
            except LmsError as exc:
                form.refuse(exc)
            else:
                return redirect(request, "/profile?saved=password")
        profile = Form({"firstName": m.first_name, "lastName": m.last_name,
                        "phone": m.phone or "", "locale": m.locale, "timezone": m.timezone})
        return page(request, "portal/profile.html", status=422, form=profile,
                    password_form=Form({}, form.errors, form.problem), saved=None, member=m)

    @post("/sign-out")
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await end_session(request, context(request), MEMBER, "/sign-in",
                                 everywhere=False)

    @post("/sign-out-everywhere")
    async def sign_out_everywhere(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await end_session(request, signed_in(request), MEMBER, "/sign-in",
                                 everywhere=True)


def csv_row(line: StatementLine, zone: str) -> list[str]:
    return [line.at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M"),
            kind_label(line.kind), spreadsheet_safe(line.description),
            spreadsheet_safe(line.reference or ""), line.unit, str(line.amount),
            str(line.balance_after)]


def language_menu(ctx: WebContext) -> list[tuple[str, str]]:
    return [(code, i18n.NATIVE_NAMES[code]) for code in i18n.LANGUAGES
            if code != ctx.language]

