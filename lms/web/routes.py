"""The web pages as Litestar routers: the portal and console controllers behind the session
and CSRF hook, their HTML error pages, and the static files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, Router
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from lms.errors import LmsError
from lms.web.console import ConsoleController
from lms.web.console_adjustments import ConsoleAdjustmentsController
from lms.web.console_audit import ConsoleAuditController
from lms.web.console_member import ConsoleMemberController
from lms.web.context import STAFF, before_request, context, page, realm_of, redirect
from lms.web.errors import SignInRequired
from lms.web.family import PortalFamilyController
from lms.web.forms import message
from lms.web.gifts import PortalGiftsController
from lms.web.i18n import gettext
from lms.web.portal import PortalController, PortalPublicController
from lms.web.purchases import PortalPurchasesController
from lms.web.redemption import PortalRedemptionCodeController
from lms.web.wallet import PortalWalletController

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# The bearer-token middleware skips routes with this in their opt (see lms.app): pages
# authenticate with their session cookie only.
NO_BEARER = {"exclude_from_auth": True}
# The member's pages beyond the core portal: gifts, family pool, partner code, wallet.
MEMBER_PAGES = [PortalGiftsController, PortalFamilyController, PortalRedemptionCodeController,
                PortalWalletController]


def sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    start = "/console/sign-in" if realm_of(request) == STAFF else "/sign-in"
    return redirect(request, f"{start}?next={quote(request.url.path)}")


def lms_error(request: Request[Any, Any, Any], exc: LmsError) -> Response[Any]:
    response = page(request, "error.html", status=exc.status,
                    title=message(exc.code, exc.title), code=exc.code)
    response.headers.update(exc.headers)
    return response


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code if exc.status_code < 500 else 500
    title = gettext("This page does not exist.") if status == 404 else \
        gettext("The request could not be handled.")
    return page(request, "error.html", status=status, title=title, code=str(status))


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    context(request)
    return page(request, "error.html", status=500,
                title=gettext("Something went wrong on our side. Please try again."),
                code="internal_error")


HANDLERS: dict[Any, Any] = {
    SignInRequired: sign_in_required,
    LmsError: lms_error,
    HTTPException: http_error,
    Exception: unexpected,
}


def web_routers() -> list[Router]:
    pages = Router(path="/", route_handlers=[PortalPublicController, PortalController,
                                             PortalPurchasesController, *MEMBER_PAGES,
                                             ConsoleController, ConsoleMemberController,
                                             ConsoleAdjustmentsController,
                                             ConsoleAuditController],
                   before_request=before_request, exception_handlers=HANDLERS,
                   include_in_schema=False, opt=NO_BEARER)
    static = create_static_files_router(path="/static", directories=[STATIC],
                                        include_in_schema=False, opt=NO_BEARER)
    return [pages, static]
