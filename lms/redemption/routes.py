"""Redemption endpoints: members' consent codes and award bookings, and the partner API for
quotes, holds, captures, voids, redemptions and refunds (API key scope ``redeem``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Body, JSONBody, Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.api.idempotency import (
    IDEMPOTENCY_REQUIRED_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
    idempotent_call,
)
from lms.api.openapi import MAX_ID, problems
from lms.auth.guards import current_principal, member_only, requires_scope
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.ledger.errors import (
    AccountClosed,
    CaptureExceedsHold,
    HoldExpired,
    HoldNotFound,
    HoldNotPending,
    InsufficientMiles,
)
from lms.partners.errors import CurrencyMismatch, PartnerNotFound
from lms.partners.routes import PARTNER_AUTH_PROBLEMS
from lms.redemption.errors import (
    CashShareTooLow,
    InvalidMemberCode,
    MemberLocked,
    NotPoolHead,
    RedemptionLocked,
    RedemptionNotFound,
    RedemptionNotOffered,
    RefundExceedsCapture,
    UnknownPartner,
)
from lms.redemption.schemas import (
    AwardBookingRequest,
    CaptureRequest,
    HoldOut,
    HoldRequest,
    QuoteOut,
    QuoteRequest,
    RedemptionCodeOut,
    RedemptionCodeRequest,
    RedemptionCodeStatus,
    RedemptionOut,
    RefundOut,
    RefundRequest,
)
from lms.redemption.service import (
    ConsentService,
    HoldClose,
    HoldOpen,
    HoldWriteService,
    MemberCodes,
    RedemptionService,
    check_member_code,
    hold_refusal,
)

HoldPath = Annotated[int, Parameter(ge=1, le=MAX_ID, description="The hold's id")]
RedemptionPath = Annotated[int, Parameter(ge=1, le=MAX_ID,
                                                description="The redemption's id")]
OrderQuery = Annotated[str, QueryParameter(name="orderReference", min_length=1,
                                          max_length=100,
                                          description="The partner's order reference")]
CODE_PROBLEMS = (InvalidMemberCode, RedemptionLocked, MemberLocked)


def service(session: AsyncSession, state: State) -> RedemptionService:
    return RedemptionService(session, state.system_accounts, state.settings)


class MyRedemptionController(Controller):
    path = "/me"
    tags = ["redemption"]
    guards = [member_only]

    # Not idempotent on purpose: the answer carries the code, and a stored answer must not.
    @post("/redemption-codes", operation_id="createRedemptionCode", status_code=201,
          summary="A one-time code that lets a partner redeem the member's miles",
          description=("Valid for 10 minutes, used once (by the hold it opens); bound to one "
                       "partner with `partnerCode`. A partner needs the card number and this "
                       "code. Five wrong codes for a card lock its redemption for 30 minutes "
                       "(see `getRedemptionCodeStatus`). With `fromPool` the head of a family "
                       "pool authorises a hold on the pool's miles (409 `not_pool_head` for "
                       "anyone else); a refund of it goes back to the pool."),
          responses=problems(Unauthorized, Forbidden, ValidationFailed, UnknownPartner,
                             MemberLocked, RedemptionLocked, NotPoolHead))
    async def create_code(self, request: Request[Any, Any, Any], state: State,
                          data: Annotated[RedemptionCodeRequest | None, Body()] = None
                          ) -> RedemptionCodeOut:
        principal = current_principal(request)
        body = data or RedemptionCodeRequest()
        result: RedemptionCodeOut = await state.db.raw_transaction(
            lambda conn: MemberCodes(conn, state.settings).issue(
                principal.id, body.partner_code, from_pool=body.from_pool))
        return result

    @get("/redemption-codes/status", operation_id="getRedemptionCodeStatus",
         summary="Whether redemption is locked after wrong codes, and the live codes",
         responses=problems(Unauthorized, Forbidden, MemberNotFound))
    async def code_status(self, request: Request[Any, Any, Any], state: State
                          ) -> RedemptionCodeStatus:
        principal = current_principal(request)
        result: RedemptionCodeStatus = await state.db.transaction(
            lambda s: ConsentService(s, state.settings).status(principal.id))
        return result

    @post("/award-bookings", operation_id="createAwardBooking", status_code=201,
          summary="Hold miles for an award booking with the programme's airline",
          description=("Opens a hold through the internal airline partner (`lm-awards`) "
                       "without a member code (the member is signed in); the airline's "
                       "booking system captures or voids it with that partner's API key "
                       "through the partner endpoints. Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, MemberLocked,
                             InsufficientMiles, PartnerNotFound, AccountClosed,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def book_award(self, request: Request[Any, Any, Any],
                         data: JSONBody[AwardBookingRequest], state: State,
                         idempotency_key: IdempotencyKeyHeader = None) -> Response[HoldOut]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> HoldOut:
            return await service(session, state).book_award(principal.id, data)

        return await idempotent(request, principal, state.db, work, key=idempotency_key,
                                required=True)


class PartnerRedemptionController(Controller):
    path = "/partner"
    tags = ["redemption"]
    guards = [requires_scope("redeem")]

    @post("/redemption-quotes", operation_id="createRedemptionQuote", status_code=200,
          summary="How many miles an order may take, and the cash left",
          description=("The member code is checked but not used up; a wrong one counts "
                       "towards the card's lock. `maxMiles` is the least of the miles "
                       "available and the most the order may take under the contract's "
                       "minimum cash share, rounded down; cash left = order amount minus "
                       "the miles' worth (miles x valuePerMileMilliMinor / 1000, rounded "
                       "down). Unknown card and wrong code: the same 403 "
                       "`invalid_member_code`."),
          responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed, *CODE_PROBLEMS,
                             CurrencyMismatch, RedemptionNotOffered))
    async def quote(self, request: Request[Any, Any, Any], data: JSONBody[QuoteRequest],
                    state: State) -> QuoteOut:
        principal = current_principal(request)
        check = await check_member_code(state.db, state.settings, principal.id,
                                        data.card_number, data.member_code)
        # Reads only: each statement commits by itself (Database.autocommit).
        result: QuoteOut = await state.db.autocommit(
            lambda conn: HoldWriteService(conn, state.system_accounts).quote(
                principal.id, check, data))
        return result

    @post("/holds", operation_id="createPartnerHold", status_code=201,
          summary="Reserve a member's miles for an order",
          description=("Needs the card number and the member's one-time code, which this "
                       "hold uses up. The miles stay reserved until captured, voided or "
                       "`ttlSeconds` pass (at most 7 days), when they are released by "
                       "themselves. Not enough miles: 409 `insufficient_miles`. The miles' "
                       "worth must leave the contract's minimum cash share to `cashAmount`. "
                       "Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed, *CODE_PROBLEMS,
                             CurrencyMismatch, RedemptionNotOffered, CashShareTooLow,
                             InsufficientMiles, AccountClosed,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def create_hold(self, request: Request[Any, Any, Any], data: JSONBody[HoldRequest],
                          state: State, idempotency_key: IdempotencyKeyHeader = None
                          ) -> Response[HoldOut]:
        principal = current_principal(request)
        # A retry of a hold that was made replays it, not refused for the code it used up:
        # the function checks the code only for a key not answered before.
        hold = HoldOpen(principal.id, data, state.settings)
        return await idempotent_call(request, principal, state.db, hold.open,
                                     key=idempotency_key, refusal=hold_refusal)

    @get("/holds", operation_id="listPartnerHolds",
         summary="The partner's holds for an order reference",
         responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed))
    async def list_holds(self, request: Request[Any, Any, Any], state: State,
                         order_reference: OrderQuery) -> list[HoldOut]:
        principal = current_principal(request)
        result: list[HoldOut] = await state.db.transaction(
            lambda s: service(s, state).holds_by_order(principal.id, order_reference))
        return result

    @get("/holds/{hold_id:int}", operation_id="getPartnerHold",
         summary="One of the partner's holds (a hold past its time is expired on read)",
         responses=problems(*PARTNER_AUTH_PROBLEMS, HoldNotFound))
    async def get_hold(self, request: Request[Any, Any, Any], hold_id: HoldPath,
                       state: State) -> HoldOut:
        principal = current_principal(request)
        result: HoldOut = await state.db.transaction(
            lambda s: service(s, state).get_hold(principal.id, hold_id))
        return result

    @post("/holds/{hold_id:int}/capture", operation_id="capturePartnerHold",
          status_code=201, summary="Capture all or part of a hold; the rest is released",
          description=("The captured miles move to the partner's clearing account and "
                       "the answer is the redemption. An expired hold: 409 `hold_expired`; "
                       "one captured or voided before: 409 `hold_not_pending`. "
                       "Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed, HoldNotFound,
                             HoldExpired, HoldNotPending, CaptureExceedsHold,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def capture(self, request: Request[Any, Any, Any], hold_id: HoldPath,
                      state: State, idempotency_key: IdempotencyKeyHeader = None,
                      data: Annotated[CaptureRequest | None, Body()] = None
                      ) -> Response[RedemptionOut]:
        principal = current_principal(request)
        close = HoldClose(principal.id, hold_id, (data or CaptureRequest()).miles)
        return await idempotent_call(request, principal, state.db, close.capture,
                                     key=idempotency_key, refusal=hold_refusal)

    @post("/holds/{hold_id:int}/void", operation_id="voidPartnerHold", status_code=200,
          summary="Release a hold's miles",
          description=("An expired hold: 409 `hold_expired`; one captured or voided "
                       "before: 409 `hold_not_pending`. Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*PARTNER_AUTH_PROBLEMS, HoldNotFound, HoldExpired,
                             HoldNotPending, *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def void(self, request: Request[Any, Any, Any], hold_id: HoldPath, state: State,
                   idempotency_key: IdempotencyKeyHeader = None) -> Response[HoldOut]:
        principal = current_principal(request)
        close = HoldClose(principal.id, hold_id)
        return await idempotent_call(request, principal, state.db, close.void,
                                     key=idempotency_key, refusal=hold_refusal)

    @get("/redemptions", operation_id="listPartnerRedemptions",
         summary="The partner's redemptions for an order reference",
         responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed))
    async def list_redemptions(self, request: Request[Any, Any, Any], state: State,
                               order_reference: OrderQuery) -> list[RedemptionOut]:
        principal = current_principal(request)
        result: list[RedemptionOut] = await state.db.transaction(
            lambda s: service(s, state).redemptions_by_order(principal.id, order_reference))
        return result

    @get("/redemptions/{redemption_id:int}", operation_id="getPartnerRedemption",
         summary="One of the partner's redemptions with its refunds",
         responses=problems(*PARTNER_AUTH_PROBLEMS, RedemptionNotFound))
    async def get_redemption(self, request: Request[Any, Any, Any],
                             redemption_id: RedemptionPath, state: State) -> RedemptionOut:
        principal = current_principal(request)
        result: RedemptionOut = await state.db.transaction(
            lambda s: service(s, state).get_redemption(principal.id, redemption_id))
        return result

    @post("/redemptions/{redemption_id:int}/refunds", operation_id="refundPartnerRedemption",
          status_code=201, summary="Give back all or part of a redemption's miles",
          description=("Never more than was captured in total: 409 `refund_exceeds_capture` "
                       "with `refundableMiles`. The miles come back to the member as a new "
                       "lot with the programme's standard validity counted from the refund. "
                       "Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed, RedemptionNotFound,
                             RefundExceedsCapture, AccountClosed,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def refund(self, request: Request[Any, Any, Any], redemption_id: RedemptionPath,
                     state: State, idempotency_key: IdempotencyKeyHeader = None,
                     data: Annotated[RefundRequest | None, Body()] = None
                     ) -> Response[RefundOut]:
        principal = current_principal(request)
        body = data or RefundRequest()

        async def work(session: AsyncSession) -> RefundOut:
            return await service(session, state).refund(principal.id, redemption_id, body)

        return await idempotent(request, principal, state.db, work, key=idempotency_key,
                                required=True)
