"""The Litestar application factory: state, middleware, routers and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from lms.accounts.routes import (
    BALANCE_PATH,
    MeController,
    MemberAuthController,
    MyBalanceController,
    answer_balance,
)
from lms.accounts.service import balance_reads
from lms.accrual.routes import (
    FlightFeedController,
    MyPromotionsController,
    ProgrammeAdminController,
)
from lms.api.health import HealthController
from lms.api.http import NO_COMPRESSION
from lms.api.openapi import document_problems
from lms.api.problems import EXCEPTION_HANDLERS
from lms.auth.middleware import BearerTokenMiddleware
from lms.auth.routes import SessionController, StaffAuthController, StaffMeController
from lms.callcentre.routes import (
    StaffAdjustmentsController,
    StaffAuditController,
    StaffEntriesController,
    StaffMembersController,
    StaffReferenceController,
)
from lms.claims.routes import MyClaimsController
from lms.db import Database
from lms.family.routes import FamilyController
from lms.gifts.routes import GiftController
from lms.ledger.service import SystemAccounts
from lms.logging import configure as configure_logging
from lms.partners.routes import PartnerAccrualController, PartnerAdminController
from lms.payments.routes import PaymentWebhookController
from lms.purchases.routes import (
    MyMilePurchasesController,
    MyStatusPurchasesController,
    PurchaseAdminController,
)
from lms.redemption.routes import MyRedemptionController, PartnerRedemptionController
from lms.settings import Settings, get_settings
from lms.settlement.routes import StatementController
from lms.tiers.admin_routes import TierAdminController
from lms.tiers.routes import MyTierController
from lms.wallet.routes import MyWalletController, PassKitController
from lms.web.routes import web_routers
from lms.webhooks.routes import WebhookAdminController

API_VERSION = "0.1.0"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Loyalty Programme API",
        version=API_VERSION,
        description=("Members, partners, airline systems and staff. Every error is "
                     "application/problem+json with a stable `code`."),
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer",
                                     description="Access token from a /token endpoint"),
            "applePass": SecurityScheme(
                type="apiKey", name="Authorization", security_scheme_in="header",
                description="PassKit web service: 'ApplePass <authenticationToken>'"),
        }),
        security=[{"bearer": []}],
        path="/schema",
    )


class LmsApp(Litestar):
    """Litestar, with the API's most frequent call answered before routing when it can be
    (lms.accounts.routes.answer_balance: a member reading their balance); every other
    request, and every refusal of that one, goes through Litestar as usual."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["path"] == BALANCE_PATH
                and scope["method"] == "GET" and await answer_balance(self.state, scope, send)):
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, db: Database | None = None) -> Litestar:
    settings = settings or get_settings()
    owns_db = db is None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if app.state.get("db") is None:
            app.state.db = Database.from_settings(settings)
        try:
            yield
        finally:
            if owns_db:
                await app.state.db.dispose()

    configure_logging(settings.log_level, settings.log_json)
    v1 = Router(path="/v1", route_handlers=[MemberAuthController, SessionController,
                                            MeController, MyBalanceController,
                                            StaffAuthController,
                                            StaffMeController, PartnerAdminController,
                                            PartnerAccrualController, MyTierController,
                                            MyClaimsController, FlightFeedController,
                                            ProgrammeAdminController,
                                            MyPromotionsController,
                                            StaffMembersController,
                                            StaffAdjustmentsController,
                                            StaffEntriesController,
                                            StaffReferenceController,
                                            StaffAuditController,
                                            TierAdminController,
                                            PaymentWebhookController,
                                            MyMilePurchasesController,
                                            MyStatusPurchasesController,
                                            PurchaseAdminController,
                                            MyRedemptionController,
                                            PartnerRedemptionController,
                                            MyWalletController, PassKitController,
                                            StatementController, WebhookAdminController,
                                            GiftController, FamilyController])
    app = LmsApp(
        # The web pages carry opt exclude_from_auth: the bearer middleware leaves them to
        # their session cookies (lms.web.context).
        route_handlers=[HealthController, v1, *web_routers()],
        state=State({"settings": settings, "db": db,
                     "system_accounts": SystemAccounts(settings.system_account_shards),
                     "balance_reads": balance_reads()}),
        lifespan=[lifespan],
        middleware=[DefineMiddleware(BearerTokenMiddleware,
                                     exclude=["^/health$", "^/ready$", "^/schema",
                                              # signed by the provider instead
                                              "^/v1/payments/webhook$",
                                              "^/v1/payments/return/",
                                              # Devices authenticate with ApplePass tokens.
                                              "^/v1/passkit/"])],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(),
        # A route whose answers are always small carries opt no_compression: the middleware
        # sets up a gzip stream for every client that accepts gzip before it knows the size.
        compression_config=CompressionConfig(backend="gzip", minimum_size=2048,
                                             exclude_opt_key=NO_COMPRESSION),
        request_max_body_size=2 * 1024 * 1024,
        debug=False,
    )
    document_problems(handler for route in app.routes
                      for handler in getattr(route, "route_handlers", ()))
    return app
