"""What every web request knows before its handler runs: who is signed in (a server-side
session found by its cookie), the language of the page and the CSRF token its forms carry;
and the one way pages answer (``page``, ``redirect``), which sets the cookies and the
security headers.

CSRF: a signed-in browser's forms carry the session's synchronizer token (kept in the
session row, new at every sign-in); an anonymous browser's forms (sign-in, sign-up, password
reset) carry a random token that must equal an HttpOnly cookie (double submit). htmx sends
the same token in the ``X-CSRF-Token`` header. Every unsafe request is refused without it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.accounts.service import MemberService
from lms.auth.models import StaffUser
from lms.auth.principal import Principal
from lms.auth.service import AuthService, StaffNotFound
from lms.settings import Settings
from lms.web import i18n
from lms.web.errors import CsrfRefused, SignInRequired
from lms.web.service import LiveSession, WebSessionService
from lms.web.templating import render

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LANGUAGE_COOKIE = "lms_lang"
MEMBER = "member"
STAFF = "staff"

# Scripts and styles only from this origin (htmx is served from /static): an injected
# <script> or inline handler would not run even if escaping failed somewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show balances and personal data: never kept by a shared cache or the back button.
    "Cache-Control": "no-store",
}


def cookie_name(settings: Settings, base: str) -> str:
    # __Host-: only ever set by this host over HTTPS with Path=/, never by a subdomain.
    return ("__Host-" if settings.web_cookie_secure else "") + base


def session_cookie(settings: Settings, realm: str) -> str:
    return cookie_name(settings, f"lms_{realm}")


def csrf_cookie(settings: Settings) -> str:
    return cookie_name(settings, "lms_csrf")


@dataclass
class WebContext:
    realm: str
    language: str
    csrf: str
    settings: Settings
    session: LiveSession | None = None
    session_token: str | None = None
    member: Member | None = None
    staff: StaffUser | None = None
    cookies: list[Cookie] = field(default_factory=list)

    @property
    def principal(self) -> Principal | None:
        return self.session.principal if self.session else None

    def cookie(self, key: str, value: str, *, max_age: int | None = None) -> None:
        self.cookies.append(Cookie(key=key, value=value, max_age=max_age, path="/",
                                   secure=self.settings.web_cookie_secure, httponly=True,
                                   samesite="lax"))

    def forget(self, key: str) -> None:
        self.cookie(key, "", max_age=0)


def realm_of(request: Request[Any, Any, Any]) -> str:
    realm: str = request.route_handler.opt.get("realm", MEMBER)
    return realm


def context(request: Request[Any, Any, Any]) -> WebContext:
    ctx = request.state.get("web")
    if isinstance(ctx, WebContext):
        return ctx
    # An error before the session was read (the database down, say): a bare page context.
    settings: Settings = request.app.state.settings
    return WebContext(realm_of(request),
                      i18n.from_accept_language(request.headers.get("accept-language")),
                      "", settings)


async def load(request: Request[Any, Any, Any]) -> WebContext:
    state = request.app.state
    settings: Settings = state.settings
    realm = realm_of(request)
    token = request.cookies.get(session_cookie(settings, realm))

    async def work(session: AsyncSession) -> tuple[LiveSession | None, Member | None,
                                                     StaffUser | None]:
        if not token:
            return None, None, None
        sessions = WebSessionService(session, settings)
        live = await sessions.resume(token, realm)
        if live is None:
            return None, None, None
        if realm == MEMBER:
            member = await MemberService(session, settings, state.system_accounts).get(
                live.principal.id)
            if member.status == "active":
                return live, member, None
        else:
            try:
                staff = await AuthService(session, settings).get_staff(live.principal.id)
            except StaffNotFound:
                staff = None
            if staff is not None and staff.active:
                return live, None, staff
        # Locked or closed since signing in: the session ends here.
        await sessions.close(token)
        return None, None, None

    live, member, staff = await state.db.transaction(work)
    language = (i18n.language_of(member.locale if member else None)
                or i18n.language_of(request.cookies.get(LANGUAGE_COOKIE))
                or i18n.from_accept_language(request.headers.get("accept-language")))
    ctx = WebContext(realm, language, "", settings, session=live,
                     session_token=token if live else None, member=member, staff=staff)
    if live is not None:
        ctx.csrf = live.csrf_token
    else:
        if token:
            ctx.forget(session_cookie(settings, realm))
        ctx.csrf = request.cookies.get(csrf_cookie(settings)) or ""
        if len(ctx.csrf) < 32:
            ctx.csrf = secrets.token_urlsafe(32)
            ctx.cookie(csrf_cookie(settings), ctx.csrf)
    return ctx


async def check_csrf(request: Request[Any, Any, Any], ctx: WebContext) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not ctx.csrf or not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
        raise CsrfRefused()


async def before_request(request: Request[Any, Any, Any]) -> None:
    """Router hook of every page: read the session, then refuse unsafe requests without
    the right CSRF token before the handler sees them."""
    ctx = await load(request)
    request.state.web = ctx
    i18n.activate(ctx.language)
    if request.method not in SAFE_METHODS:
        await check_csrf(request, ctx)


def finish(request: Request[Any, Any, Any], response: Response[Any]) -> Response[Any]:
    for cookie in context(request).cookies:
        response.set_cookie(cookie)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def page(request: Request[Any, Any, Any], template: str, *, status: int = 200,
         **values: Any) -> Response[Any]:
    ctx = context(request)
    html = render(template, ctx.language, {
        "web": ctx, "lang": ctx.language, "csrf": ctx.csrf, "path": request.url.path,
        "htmx": request.headers.get("hx-request") == "true", **values})
    return finish(request, Response(html, media_type=MediaType.HTML, status_code=status))


def redirect(request: Request[Any, Any, Any], to: str) -> Response[Any]:
    return finish(request, Redirect(path=to, status_code=303))


def local_path(target: str | None, default: str) -> str:
    """Only a path on this site may be a redirect target (no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    return target


def signed_in(request: Request[Any, Any, Any]) -> WebContext:
    ctx = context(request)
    if ctx.session is None:
        raise SignInRequired(next=quote(request.url.path))
    return ctx
