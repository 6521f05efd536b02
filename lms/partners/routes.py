"""Partner endpoints: the admin API for contracts, earn rates and keys, and the partner API
for accruals (authenticated by API key, scope ``accrue``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Body, JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    IDEMPOTENCY_REQUIRED_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
    idempotent_grouped,
)
from lms.api.openapi import problems
from lms.auth.guards import InsufficientScope, admin_only, current_principal, requires_scope
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.ledger.errors import AccountClosed
from lms.partners.errors import (
    AccrualNotFound,
    ApiKeyNotFound,
    CurrencyMismatch,
    DuplicatePartnerTransaction,
    EarnRateOverlap,
    InvalidEarnRate,
    InvalidIpAllowList,
    InvalidOccurredAt,
    IpNotAllowed,
    NoEarnRate,
    PartnerExists,
    PartnerNotFound,
    PartnerSuspended,
    RateLimited,
    ReversalExceedsAccrual,
)
from lms.partners.key_gate import GATE
from lms.partners.models import ApiKey, Partner, PartnerEarnRate
from lms.partners.schemas import (
    AccrualOut,
    AccrualRequest,
    ApiKeyCreate,
    ApiKeyOut,
    ApiKeyRotate,
    EarnRateOut,
    EarnRateSet,
    IssuedApiKeyOut,
    PartnerCreate,
    PartnerOut,
    ReversalOut,
    ReversalRequest,
)
from lms.partners.service import (
    AccrualService,
    IssuedKey,
    PartnerAccrualService,
    PartnerService,
)

CodePath = Annotated[str, Parameter(max_length=32, description="The partner's code")]
TxnPath = Annotated[str, Parameter(max_length=100, description="The partner's transaction id")]
# Every partner call can be refused before it reaches the route.
PARTNER_AUTH_PROBLEMS = (Unauthorized, InsufficientScope, IpNotAllowed, PartnerSuspended,
                         RateLimited)


def admin_service(session: AsyncSession, state: State,
                  request: Request[Any, Any, Any]) -> PartnerService:
    return PartnerService(session, state.system_accounts, current_principal(request))


def rate_out(r: PartnerEarnRate) -> EarnRateOut:
    return EarnRateOut(id=r.id, category=r.category, miles_per_unit_bp=r.miles_per_unit_bp,
                       effective_from=r.effective_from, effective_to=r.effective_to)


def partner_out(p: Partner, rates: list[PartnerEarnRate] | None = None) -> PartnerOut:
    return PartnerOut(id=p.id, code=p.code, name=p.name, kind=p.kind, status=p.status,
                      currency=p.currency,
                      price_per_mile_milli_minor=p.price_per_mile_milli_minor,
                      value_per_mile_milli_minor=p.value_per_mile_milli_minor,
                      min_cash_share_bp=p.min_cash_share_bp, webhook_url=p.webhook_url,
                      clearing_account_id=p.clearing_account_id, created_at=p.created_at,
                      earn_rates=[rate_out(r) for r in rates or []])


def key_out(k: ApiKey, partner_code: str) -> ApiKeyOut:
    return ApiKeyOut(id=k.id, partner_code=partner_code, prefix=k.prefix,
                     scopes=list(k.scopes), status=k.status, ip_allow_list=k.ip_allow_list,
                     rate_limit_per_minute=k.rate_limit_per_minute, created_at=k.created_at,
                     expires_at=k.expires_at, revoked_at=k.revoked_at)


def issued_out(issued: IssuedKey) -> IssuedApiKeyOut:
    return IssuedApiKeyOut(key=issued.key, api_key=key_out(issued.api_key, issued.partner_code))


class PartnerAdminController(Controller):
    path = "/admin"
    tags = ["partners (admin)"]
    guards = [admin_only]

    @post("/partners", operation_id="createPartner", status_code=201,
          summary="Create a partner and its clearing account in the ledger",
          description="Keys are issued separately (`createPartnerApiKey`), so that this "
                      "answer holds no secret and can be replayed under its Idempotency-Key.",
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, PartnerExists,
                             *IDEMPOTENCY_PROBLEMS))
    async def create(self, request: Request[Any, Any, Any], data: JSONBody[PartnerCreate],
                     state: State, idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[PartnerOut]:
        async def work(session: AsyncSession) -> PartnerOut:
            return partner_out(await admin_service(session, state, request)
                               .create(data))

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)

    @get("/partners", operation_id="listPartners", summary="All partners",
         responses=problems(Unauthorized, Forbidden))
    async def list_partners(self, request: Request[Any, Any, Any], state: State
                            ) -> list[PartnerOut]:
        async def work(session: AsyncSession) -> list[PartnerOut]:
            return [partner_out(p) for p in
                    await admin_service(session, state, request).all()]

        result: list[PartnerOut] = await state.db.transaction(work)
        return result

    @get("/partners/{code:str}", operation_id="getPartner",
         summary="A partner with its earn rates",
         responses=problems(Unauthorized, Forbidden, PartnerNotFound))
    async def get_partner(self, request: Request[Any, Any, Any], code: CodePath,
                          state: State) -> PartnerOut:
        async def work(session: AsyncSession) -> PartnerOut:
            service = admin_service(session, state, request)
            partner = await service.get(code)
            return partner_out(partner, await service.earn_rates(partner.id))

        result: PartnerOut = await state.db.transaction(work)
        return result

    @post("/partners/{code:str}/earn-rates", operation_id="setPartnerEarnRate",
          status_code=201, summary="Add an earn rate for a category and period",
          description=("A new open-ended rate (no `effectiveTo`) ends the open-ended rate "
                       "before it at `effectiveFrom`; any other overlap is refused. Credits "
                       "already made keep their miles."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, PartnerNotFound,
                             InvalidEarnRate, EarnRateOverlap, *IDEMPOTENCY_PROBLEMS))
    async def set_earn_rate(self, request: Request[Any, Any, Any], code: CodePath,
                            data: JSONBody[EarnRateSet], state: State,
                            idempotency_key: IdempotencyKeyHeader = None
                            ) -> Response[EarnRateOut]:
        async def work(session: AsyncSession) -> EarnRateOut:
            return rate_out(await admin_service(session, state, request)
                            .set_earn_rate(code, data))

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)

    @get("/partners/{code:str}/api-keys", operation_id="listPartnerApiKeys",
         summary="A partner's API keys (never the keys themselves)",
         responses=problems(Unauthorized, Forbidden, PartnerNotFound))
    async def list_keys(self, request: Request[Any, Any, Any], code: CodePath,
                        state: State) -> list[ApiKeyOut]:
        async def work(session: AsyncSession) -> list[ApiKeyOut]:
            return [key_out(k, code) for k in
                    await admin_service(session, state, request).keys(code)]

        result: list[ApiKeyOut] = await state.db.transaction(work)
        return result

    # Not idempotent on purpose: the answer carries the key, and a stored answer must not.
    @post("/partners/{code:str}/api-keys", operation_id="createPartnerApiKey",
          status_code=201, summary="Issue an API key; the key is in this answer only",
          responses=problems(Unauthorized, Forbidden, ValidationFailed, PartnerNotFound,
                             InvalidIpAllowList))
    async def create_key(self, request: Request[Any, Any, Any], code: CodePath,
                         data: JSONBody[ApiKeyCreate], state: State) -> IssuedApiKeyOut:
        async def work(session: AsyncSession) -> IssuedApiKeyOut:
            return issued_out(await admin_service(session, state, request)
                              .issue_key(code, data))

        result: IssuedApiKeyOut = await state.db.transaction(work)
        return result

    @post("/partners/{code:str}/api-keys/rotate", operation_id="rotatePartnerApiKey",
          status_code=201,
          summary="Issue a new key like the newest live one; the live keys stop working "
                  "after the overlap",
          responses=problems(Unauthorized, Forbidden, ValidationFailed, PartnerNotFound,
                             ApiKeyNotFound))
    async def rotate_key(self, request: Request[Any, Any, Any], code: CodePath, state: State,
                         data: Annotated[ApiKeyRotate | None, Body()] = None
                         ) -> IssuedApiKeyOut:
        overlap = timedelta(seconds=(data or ApiKeyRotate()).overlap_seconds)

        async def work(session: AsyncSession) -> IssuedApiKeyOut:
            return issued_out(await admin_service(session, state, request)
                              .rotate_key(code, overlap))

        result: IssuedApiKeyOut = await state.db.transaction(work)
        GATE.forget_all()  # the replaced keys' expiry changed: check them again (rare)
        return result

    @post("/api-keys/{prefix:str}/revoke", operation_id="revokeApiKey", status_code=200,
          summary="Revoke an API key at once (revoking twice changes nothing)",
          responses=problems(Unauthorized, Forbidden, ApiKeyNotFound))
    async def revoke_key(self, request: Request[Any, Any, Any],
                         prefix: Annotated[str, Parameter(max_length=16)],
                         state: State) -> ApiKeyOut:
        async def work(session: AsyncSession) -> ApiKeyOut:
            key, code = await admin_service(session, state, request).revoke_key(prefix)
            return key_out(key, code)

        result: ApiKeyOut = await state.db.transaction(work)
        GATE.forget(prefix)
        return result


class PartnerAccrualController(Controller):
    path = "/partner/accruals"
    tags = ["partners"]
    guards = [requires_scope("accrue")]

    @post("", operation_id="createPartnerAccrual", status_code=201,
          summary="Credit miles for a purchase at the partner",
          description=("Miles = amount times the category's earn rate in force at `occurredAt`, "
                       "rounded down; the partner's clearing account is debited. A "
                       "`partnerTxnId` is credited once, ever. Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed, MemberNotFound,
                             CurrencyMismatch, InvalidOccurredAt, NoEarnRate,
                             DuplicatePartnerTransaction, AccountClosed,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def accrue(self, request: Request[Any, Any, Any], data: JSONBody[AccrualRequest],
                     state: State, idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[AccrualOut]:
        principal = current_principal(request)
        accrual = AccrualService(principal.id, data)
        return await idempotent_grouped(request, principal, state.db, accrual.function,
                                        accrual.arguments, key=idempotency_key,
                                        refusal=accrual.refusal)

    @get("/{partner_txn_id:str}", operation_id="getPartnerAccrual",
         summary="One of the partner's accruals, with what has been reversed of it",
         responses=problems(*PARTNER_AUTH_PROBLEMS, AccrualNotFound))
    async def get_accrual(self, request: Request[Any, Any, Any], partner_txn_id: TxnPath,
                          state: State) -> AccrualOut:
        principal = current_principal(request)
        result: AccrualOut = await state.db.transaction(
            lambda s: PartnerAccrualService(s, state.system_accounts).get(
                principal.id, partner_txn_id))
        return result

    @post("/{partner_txn_id:str}/reversal", operation_id="reversePartnerAccrual",
          status_code=201, summary="Take back the miles of all or part of a purchase",
          description=("Without `amount`, all that is left is reversed. Miles are "
                       "proportional to the amount reversed in total, rounded down, so "
                       "partial reversals never take back more than was credited. Miles the "
                       "member has already spent are taken back all the same: the shortfall "
                       "becomes debt (a negative `balanceAfter`), which blocks redemptions "
                       "until later accruals repay it. Idempotency-Key is required."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*PARTNER_AUTH_PROBLEMS, ValidationFailed, AccrualNotFound,
                             ReversalExceedsAccrual, AccountClosed,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def reverse(self, request: Request[Any, Any, Any], partner_txn_id: TxnPath,
                      state: State, idempotency_key: IdempotencyKeyHeader = None,
                      data: Annotated[ReversalRequest | None, Body()] = None
                      ) -> Response[ReversalOut]:
        principal = current_principal(request)
        body = data or ReversalRequest()

        async def work(session: AsyncSession) -> ReversalOut:
            return await PartnerAccrualService(session, state.system_accounts).reverse(
                principal.id, partner_txn_id, body)

        return await idempotent(request, principal, state.db, work, key=idempotency_key,
                                required=True)
