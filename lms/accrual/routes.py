"""Accrual endpoints: the flown-coupon feed for airline systems (API key, scope ``flights``),
the admin API of earn rules and promotions, and a member's promotion registration."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.clawback import reverse_coupon
from lms.accrual.earning import Coupon
from lms.accrual.errors import (
    CouponNotCredited,
    InvalidPromotion,
    InvalidRule,
    PromotionExists,
    PromotionNotFound,
    RegistrationNotOpen,
    RuleVersionExists,
)
from lms.accrual.schemas import (
    CouponIn,
    CouponOutcome,
    CouponReversalOut,
    CouponReversalRequest,
    EarnRuleIn,
    EarnRuleOut,
    FlightBatchRequest,
    FlightBatchResponse,
    PromotionIn,
    PromotionOut,
    RegistrationOut,
    RuleKindName,
)
from lms.accrual.service import (
    Outcome,
    ProgrammeRules,
    StaffActor,
    credit_coupons,
    credit_in_session,
)
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    IDEMPOTENCY_REQUIRED_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import problems
from lms.auth.guards import (
    InsufficientScope,
    admin_only,
    current_principal,
    member_only,
    requires_scope,
)
from lms.auth.principal import Principal
from lms.db import RawConnection, raw_connection
from lms.errors import Forbidden, ServiceUnavailable, Unauthorized, ValidationFailed
from lms.ledger.errors import AccountClosed, AlreadyReversed, DuplicateExternalReference
from lms.ledger.types import Actor

CodePath = Annotated[str, Parameter(max_length=32, description="The promotion's code")]


def to_coupon(c: CouponIn) -> Coupon:
    return Coupon(ticket_number=c.ticket_number, coupon_number=c.coupon_number,
                  card_number=c.card_number, flight_date=c.flight_date,
                  marketing_carrier=c.marketing_carrier, operating_carrier=c.operating_carrier,
                  flight_number=c.flight_number, origin=c.origin, destination=c.destination,
                  booking_class=c.booking_class, cabin=c.cabin, booking_date=c.booking_date,
                  fare_amount=c.fare_amount, fare_currency=c.fare_currency)


def batch_out(outcomes: list[Outcome]) -> FlightBatchResponse:
    rows = [CouponOutcome(ticket_number=o.coupon.ticket_number,
                          coupon_number=o.coupon.coupon_number, status=o.status,  # type: ignore[arg-type]
                          miles=o.miles, status_miles=o.status_miles, segments=o.segments,
                          reason=str(o.reason) if o.reason else None, detail=o.detail,
                          entry_id=o.entry_id) for o in outcomes]
    return FlightBatchResponse(
        credited=sum(o.status == "credited" for o in outcomes),
        duplicates=sum(o.status == "duplicate" for o in outcomes),
        rejected=sum(o.status == "rejected" for o in outcomes), outcomes=rows)


TicketPath = Annotated[str, Parameter(min_length=1, max_length=20)]
CouponPath = Annotated[int, Parameter(ge=1, le=99)]


def staff_actor(principal: Principal) -> StaffActor:
    return (principal.type, str(principal.id), str(principal.role))


class FlightFeedController(Controller):
    path = "/activities"
    tags = ["flights"]
    guards = [requires_scope("flights")]

    @post("/flights:batch", operation_id="creditFlownCoupons", status_code=200,
          summary="Credit up to 1,000 flown coupons",
          description=(
              "Each coupon is answered `credited` (with miles, status miles and segments), "
              "`duplicate` (credited before, or repeated in this batch: nothing changes) or "
              "`rejected` with a `reason`: unknown_member, member_not_active, "
              "unknown_airport, carrier_not_eligible, class_not_eligible, fare_required, "
              "fare_currency_not_accepted, flight_in_future, invalid_coupon, "
              "nothing_to_credit. A coupon (ticket number + coupon number) is credited once, "
              "ever, so resending a batch is safe; a body that does not parse is refused "
              "whole with 422 and changes nothing. Idempotency-Key is optional: with one, a "
              "retry replays the first answer."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, InsufficientScope, ValidationFailed,
                             DuplicateExternalReference, AccountClosed, ServiceUnavailable,
                             *IDEMPOTENCY_PROBLEMS))
    async def credit(self, request: Request[Any, Any, Any], data: JSONBody[FlightBatchRequest],
                     state: State, idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[FlightBatchResponse]:
        principal = current_principal(request)
        actor = Actor("partner", str(principal.id))
        coupons = [to_coupon(c) for c in data.coupons]
        months = state.settings.lot_validity_months
        if idempotency_key is None:
            outcomes = await credit_coupons(state.db, state.system_accounts, coupons,
                                            actor=actor, lot_validity_months=months,
                                            reevaluate_tiers=True)
            return Response(batch_out(outcomes), status_code=200)

        async def work(session: AsyncSession) -> FlightBatchResponse:
            return batch_out(await credit_in_session(session, state.system_accounts, coupons,
                                                     actor=actor, lot_validity_months=months))

        return await idempotent(request, principal, state.db, work, key=idempotency_key,
                                status_code=200)

    @post("/flights/{ticket_number:str}/{coupon_number:int}/reversal",
          operation_id="reverseFlownCoupon", status_code=201,
          summary="Take back a credited coupon's miles, status miles and segments",
          description=(
              "For a refunded or disputed ticket. The coupon's whole credit is reversed, "
              "promotion bonuses included. Miles the member has already spent are taken "
              "all the same: the shortfall becomes `debt`, which blocks redemptions until "
              "later accruals repay it. A reversed coupon is never credited again. "
              "Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, InsufficientScope, ValidationFailed,
                             CouponNotCredited, AlreadyReversed, ServiceUnavailable,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def reverse(self, request: Request[Any, Any, Any], ticket_number: TicketPath,
                      coupon_number: CouponPath, state: State,
                      data: JSONBody[CouponReversalRequest],
                      idempotency_key: IdempotencyKeyHeader = None
                      ) -> Response[CouponReversalOut]:
        principal = current_principal(request)
        actor = Actor("partner", str(principal.id))

        async def work(session: AsyncSession) -> CouponReversalOut:
            return await reverse_coupon(session, state.system_accounts, ticket_number,
                                        coupon_number, actor=actor, reason=data.reason)

        return await idempotent(request, principal, state.db, work, key=idempotency_key,
                                required=True)


class ProgrammeAdminController(Controller):
    path = "/admin/programme"
    tags = ["programme"]
    guards = [admin_only]

    @get("/earn-rules", operation_id="listEarnRules",
         summary="Every version of the earn rules, oldest first per rule",
         responses=problems(Unauthorized, Forbidden))
    async def list_rules(
        self, state: State,
        kind: Annotated[RuleKindName | None, QueryParameter()] = None,
        key: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> list[EarnRuleOut]:
        result: list[EarnRuleOut] = await state.db.raw_transaction(
            lambda conn: ProgrammeRules(conn).list_rules(kind, key))
        return result

    @post("/earn-rules", operation_id="addEarnRuleVersion", status_code=201,
          summary="Add a version of a carrier chart, booking class or tier bonus",
          description=(
              "The version applies to flights from `effectiveFrom` until a later version; "
              "versions are never edited, so past credits keep their terms. `body` by kind: "
              "carrier {name, earnMethod distance|revenue, ownAirline, minMilesPerSegment, "
              "minStatusMilesPerSegment, revenueCurrency, revenueMilesPerUnit, "
              "revenueMilesPerUnitByTier}; booking_class (key CARRIER/CLASS) {cabin, "
              "milesPercent, statusMilesPercent, segments, eligible}; tier_bonus (key: tier) "
              "{bonusPercent}."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, InvalidRule,
                             RuleVersionExists, *IDEMPOTENCY_PROBLEMS))
    async def add_rule(self, request: Request[Any, Any, Any], data: JSONBody[EarnRuleIn],
                       state: State, idempotency_key: IdempotencyKeyHeader = None
                       ) -> Response[EarnRuleOut]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> EarnRuleOut | None:
            rules = ProgrammeRules(await raw_connection(session))
            return await rules.add_rule(data, principal.key, staff=staff_actor(principal))

        return await idempotent(request, principal, state.db, work, key=idempotency_key)

    @get("/promotions", operation_id="listPromotions",
         summary="Every promotion, with the miles awarded so far against its budget",
         responses=problems(Unauthorized, Forbidden))
    async def list_promotions(self, state: State) -> list[PromotionOut]:
        result: list[PromotionOut] = await state.db.raw_transaction(
            lambda conn: ProgrammeRules(conn).list_promotions())
        return result

    @post("/promotions", operation_id="addPromotion", status_code=201,
          summary="Add a promotion (bonus percent of base miles and/or fixed miles)",
          description=("Empty filters do not restrict. `budget` (total miles) and "
                       "`memberCap` are never exceeded, even by concurrent credits: the last "
                       "coupons get what is left."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, InvalidPromotion,
                             PromotionExists, *IDEMPOTENCY_PROBLEMS))
    async def add_promotion(self, request: Request[Any, Any, Any],
                            data: JSONBody[PromotionIn], state: State,
                            idempotency_key: IdempotencyKeyHeader = None
                            ) -> Response[PromotionOut]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> PromotionOut | None:
            rules = ProgrammeRules(await raw_connection(session))
            return await rules.add_promotion(data, staff=staff_actor(principal))

        return await idempotent(request, principal, state.db, work, key=idempotency_key)


class MyPromotionsController(Controller):
    path = "/me/promotions"
    tags = ["members"]
    guards = [member_only]

    @post("/{code:str}/registration", operation_id="registerForPromotion", status_code=201,
          summary="Register for a promotion that asks for registration",
          description="201 when registered now, 200 when already registered (no change).",
          responses=problems(Unauthorized, Forbidden, PromotionNotFound, RegistrationNotOpen))
    async def register(self, request: Request[Any, Any, Any], code: CodePath, state: State
                       ) -> Response[RegistrationOut]:
        principal = current_principal(request)

        async def work(conn: RawConnection) -> tuple[Any, bool]:
            return await ProgrammeRules(conn).register(code, principal.id)

        at, created = await state.db.raw_transaction(work)
        return Response(RegistrationOut(promotion_code=code, registered_at=at),
                        status_code=201 if created else 200)
