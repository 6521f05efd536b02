"""Member endpoints of buying miles and status: create (idempotent), list, read, offers."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import MAX_ID, problems
from lms.auth.guards import current_principal, member_only, requires
from lms.auth.principal import Role
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.payments.errors import PaymentProviderUnavailable
from lms.purchases.errors import (
    InvalidMilesAmount,
    MemberNotActive,
    PurchaseNotFound,
    PurchasesUnavailable,
    StatusNotOffered,
    YearlyCapExceeded,
)
from lms.purchases.models import Purchase
from lms.purchases.rules import MILES, STATUS
from lms.purchases.schemas import (
    MilePurchaseOut,
    MilePurchaseRequest,
    Money,
    PurchaseAdminOut,
    StatusOffers,
    StatusPurchaseOut,
    StatusPurchaseRequest,
)
from lms.purchases.service import PurchaseService, new_reference

PurchaseId = Annotated[int, Parameter(ge=1, le=MAX_ID, description="The purchase's id")]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="At most this many, newest "
                                                                "first")]


def service(session: AsyncSession, state: State) -> PurchaseService:
    return PurchaseService(session, state.system_accounts, state.settings)


def mile_out(p: Purchase) -> MilePurchaseOut:
    assert p.miles is not None
    return MilePurchaseOut(id=p.id, reference=p.reference, miles=p.miles,
                           price=Money(p.amount_minor, p.currency), status=p.status,
                           payment_url=p.payment_url, expires_at=p.expires_at,
                           created_at=p.created_at, closed_at=p.closed_at,
                           entry_id=p.entry_id, refund_due=p.refund_due, note=p.note)


def status_out(p: Purchase) -> StatusPurchaseOut:
    assert p.tier is not None
    return StatusPurchaseOut(id=p.id, reference=p.reference, tier=p.tier,
                             price=Money(p.amount_minor, p.currency), status=p.status,
                             payment_url=p.payment_url, expires_at=p.expires_at,
                             created_at=p.created_at, closed_at=p.closed_at,
                             valid_until=p.valid_until, refund_due=p.refund_due, note=p.note)


def admin_out(p: Purchase) -> PurchaseAdminOut:
    return PurchaseAdminOut(id=p.id, reference=p.reference, member_id=p.member_id,
                            kind=p.kind, miles=p.miles, tier=p.tier,
                            price=Money(p.amount_minor, p.currency), status=p.status,
                            provider_payment_id=p.provider_payment_id,
                            refund_due=p.refund_due, note=p.note, created_at=p.created_at,
                            closed_at=p.closed_at)


class PurchaseAdminController(Controller):
    path = "/admin/purchases"
    tags = ["purchases (admin)"]
    guards = [requires(Role.ADMIN, Role.SUPERVISOR)]

    @get("/refunds-due", operation_id="listPurchaseRefundsDue",
         summary="Purchases whose payment was taken but bought nothing (to refund)",
         description=("A payment of the wrong amount or currency, one that arrived after the "
                      "purchase expired, or a bought tier the member already held above."),
         responses=problems(Unauthorized, Forbidden))
    async def refunds_due(self, state: State, limit: Limit = 100) -> list[PurchaseAdminOut]:
        async def work(session: AsyncSession) -> list[PurchaseAdminOut]:
            return [admin_out(p) for p in await service(session, state).refunds_due(limit)]

        result: list[PurchaseAdminOut] = await state.db.transaction(work)
        return result


class MyMilePurchasesController(Controller):
    path = "/me/mile-purchases"
    tags = ["purchases"]
    guards = [member_only]

    @post("", operation_id="buyMiles", status_code=201,
          summary="Start buying miles: a pending purchase with its price and a paymentUrl",
          description=(
              "The price comes from the programme's bands (the whole purchase at the band "
              "its size falls in). Miles are posted only when the provider confirms the "
              "payment (`POST /v1/payments/webhook`); a purchase not paid within the "
              "pending time expires. Pending purchases count against the yearly cap."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, MemberNotFound,
                             InvalidMilesAmount, MemberNotActive, YearlyCapExceeded,
                             PurchasesUnavailable, PaymentProviderUnavailable,
                             *IDEMPOTENCY_PROBLEMS))
    async def buy(self, request: Request[Any, Any, Any], data: JSONBody[MilePurchaseRequest],
                  state: State, idempotency_key: IdempotencyKeyHeader = None
                  ) -> Response[MilePurchaseOut]:
        principal = current_principal(request)
        # Made once per request, so that a retried unit of work asks the provider for the
        # same payment (the provider is idempotent on our reference).
        reference = new_reference(MILES)

        async def work(session: AsyncSession) -> MilePurchaseOut:
            return mile_out(await service(session, state).buy_miles(
                principal.id, data.miles, reference))

        return await idempotent(request, principal, state.db, work, key=idempotency_key)

    @get("", operation_id="listMyMilePurchases", summary="The member's mile purchases",
         responses=problems(Unauthorized, Forbidden))
    async def list_purchases(self, request: Request[Any, Any, Any], state: State,
                             limit: Limit = 50) -> list[MilePurchaseOut]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> list[MilePurchaseOut]:
            return [mile_out(p) for p in
                    await service(session, state).list_of(principal.id, MILES, limit)]

        result: list[MilePurchaseOut] = await state.db.transaction(work)
        return result

    @get("/{purchase_id:int}", operation_id="getMyMilePurchase",
         summary="One of the member's mile purchases",
         responses=problems(Unauthorized, Forbidden, PurchaseNotFound))
    async def get_purchase(self, request: Request[Any, Any, Any], purchase_id: PurchaseId,
                           state: State) -> MilePurchaseOut:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> MilePurchaseOut:
            return mile_out(await service(session, state).get(principal.id, MILES,
                                                              purchase_id))

        result: MilePurchaseOut = await state.db.transaction(work)
        return result


class MyStatusPurchasesController(Controller):
    path = "/me/status-purchases"
    tags = ["purchases"]
    guards = [member_only]

    @get("/offers", operation_id="listMyStatusOffers",
         summary="Tiers the member may buy now, with their price and validity",
         description=(
             "A tier above the member's is offered when the member has earned at least "
             "`minProgressPercent` of its status miles or of its segments in the current "
             "qualification window. A bought tier is held to the end of the next "
             "qualification period (`validUntil`)."),
         responses=problems(Unauthorized, Forbidden, MemberNotFound, PurchasesUnavailable))
    async def offers(self, request: Request[Any, Any, Any], state: State) -> StatusOffers:
        principal = current_principal(request)
        result: StatusOffers = await state.db.transaction(
            lambda s: service(s, state).offers(principal.id))
        return result

    @post("", operation_id="buyStatus", status_code=201,
          summary="Start buying a tier: a pending purchase with its price and a paymentUrl",
          description=(
              "Only a tier among the member's offers. On a confirmed payment the member "
              "holds the tier to the end of the next qualification period (tier history "
              "reason `purchase`). If the member has meanwhile reached a higher tier, the "
              "purchase completes without change and is flagged `refundDue`; if the same "
              "tier, the later validity is kept."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, MemberNotFound,
                             MemberNotActive, StatusNotOffered, PurchasesUnavailable,
                             PaymentProviderUnavailable, *IDEMPOTENCY_PROBLEMS))
    async def buy(self, request: Request[Any, Any, Any],
                  data: JSONBody[StatusPurchaseRequest], state: State,
                  idempotency_key: IdempotencyKeyHeader = None
                  ) -> Response[StatusPurchaseOut]:
        principal = current_principal(request)
        reference = new_reference(STATUS)

        async def work(session: AsyncSession) -> StatusPurchaseOut:
            return status_out(await service(session, state).buy_status(
                principal.id, data.tier, reference))

        return await idempotent(request, principal, state.db, work, key=idempotency_key)

    @get("", operation_id="listMyStatusPurchases", summary="The member's status purchases",
         responses=problems(Unauthorized, Forbidden))
    async def list_purchases(self, request: Request[Any, Any, Any], state: State,
                             limit: Limit = 50) -> list[StatusPurchaseOut]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> list[StatusPurchaseOut]:
            return [status_out(p) for p in
                    await service(session, state).list_of(principal.id, STATUS, limit)]

        result: list[StatusPurchaseOut] = await state.db.transaction(work)
        return result

    @get("/{purchase_id:int}", operation_id="getMyStatusPurchase",
         summary="One of the member's status purchases",
         responses=problems(Unauthorized, Forbidden, PurchaseNotFound))
    async def get_purchase(self, request: Request[Any, Any, Any], purchase_id: PurchaseId,
                           state: State) -> StatusPurchaseOut:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> StatusPurchaseOut:
            return status_out(await service(session, state).get(principal.id, STATUS,
                                                                purchase_id))

        result: StatusPurchaseOut = await state.db.transaction(work)
        return result
