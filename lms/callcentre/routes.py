"""Staff endpoints of the call centre (``/v1/staff/...``): search, the 360° view,
adjustments and their approval, reversals, locks, merges, reason codes, limits and the audit
log. Marketers have no access here: it is all members' personal data and their money."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.accounts.schemas import StatementPage
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import MAX_ID, problems
from lms.auth.guards import current_principal, requires
from lms.auth.principal import Role
from lms.callcentre.adjustments import AdjustmentService
from lms.callcentre.audit import AuditLog, StaffContext
from lms.callcentre.errors import (
    AdjustmentNotFound,
    AdjustmentNotPending,
    InvalidCursor,
    InvalidSearch,
    InvalidSearchPhone,
    MemberClosed,
    MemberNotActive,
    MemberNotLocked,
    MergedElsewhere,
    MergeFamilyPool,
    MergeIntoSelf,
    MergePendingHolds,
    MergeTargetClosed,
    OwnAdjustment,
    ReasonCodeExists,
    ReasonCodeInactive,
    ReasonCodeNotFound,
)
from lms.callcentre.models import AdjustmentLimit, ReasonCode
from lms.callcentre.operations import MemberOperations
from lms.callcentre.profile import ProfileService
from lms.callcentre.schemas import (
    AdjustmentOut,
    AdjustmentPage,
    AdjustmentRequest,
    AuditPage,
    Decision,
    LimitOut,
    LimitSet,
    Member360,
    MemberStatusOut,
    MergeOut,
    MergeRequest,
    ReasonCodeCreate,
    ReasonCodeOut,
    ReasonRequest,
    ReversalOut,
    SearchPage,
)
from lms.callcentre.search import SearchQuery, SearchService
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.ledger.errors import (
    AccountClosed,
    AlreadyReversed,
    EntryNotFound,
    InsufficientMiles,
    NotReversible,
)
from lms.ledger.types import Unit

call_centre = requires(Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
supervisors = requires(Role.SUPERVISOR, Role.ADMIN)
admins = requires(Role.ADMIN)

AUTH = (Unauthorized, Forbidden)
CardPath = Annotated[str, Parameter(max_length=32, description="The member's card number")]
Cursor = Annotated[str | None, QueryParameter(max_length=300,
                                              description="nextCursor of the previous page")]
AdjustmentId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
EntryId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
Limit = Annotated[int, QueryParameter(ge=1, le=100)]
Text = Annotated[str | None, QueryParameter(max_length=200)]


def staff(request: Request[Any, Any, Any]) -> StaffContext:
    return StaffContext(current_principal(request),
                        request.client.host if request.client else None)


def reason_code_out(r: ReasonCode) -> ReasonCodeOut:
    return ReasonCodeOut(code=r.code, description=r.description, active=r.active,
                         created_at=r.created_at, updated_at=r.updated_at)


def limit_out(r: AdjustmentLimit) -> LimitOut:
    return LimitOut(role=r.role, per_adjustment=r.per_adjustment, per_day=r.per_day,
                    updated_at=r.updated_at)


class StaffMembersController(Controller):
    path = "/staff/members"
    tags = ["call centre"]
    guards = [call_centre]

    @get("", operation_id="searchMembers",
         summary="Find members by card, e-mail, phone, name prefix or ticket number",
         description=(
             "Exactly one kind of search: `cardNumber`, `email`, `phone` (any format: "
             "`+44 20 7946 0958`, `00442079460958`, or `020 7946 0958` with `region=GB`), "
             "`name` (\"Lovelace\", \"Ada Lovelace\" or \"Lovelace, Ada\"; prefixes, any case) "
             "or `firstName`/`lastName` prefixes, or `ticketNumber` (flown or claimed). "
             "Every search is recorded in the audit log."),
         responses=problems(*AUTH, ValidationFailed, InvalidSearch, InvalidSearchPhone,
                            InvalidCursor))
    async def search(
        self, request: Request[Any, Any, Any], state: State,
        card_number: Annotated[str | None, QueryParameter(name="cardNumber",
                                                          max_length=32)] = None,
        email: Annotated[str | None, QueryParameter(max_length=320)] = None,
        phone: Annotated[str | None, QueryParameter(max_length=40)] = None,
        region: Annotated[str | None, QueryParameter(
            max_length=2, description="ISO 3166 region of a phone number typed without "
                                      "its country code, e.g. GB")] = None,
        name: Text = None,
        first_name: Annotated[str | None, QueryParameter(name="firstName",
                                                         max_length=100)] = None,
        last_name: Annotated[str | None, QueryParameter(name="lastName",
                                                        max_length=100)] = None,
        ticket_number: Annotated[str | None, QueryParameter(name="ticketNumber",
                                                            max_length=30)] = None,
        cursor: Cursor = None, limit: Limit = 20,
    ) -> SearchPage:
        query = SearchQuery(card_number=card_number, email=email, phone=phone, region=region,
                            name=name, first_name=first_name, last_name=last_name,
                            ticket_number=ticket_number)
        ctx = staff(request)
        page: SearchPage = await state.db.transaction(
            lambda s: SearchService(s, ctx).search(query, cursor=cursor, limit=limit))
        return page

    @get("/{card:str}", operation_id="getStaffMember360",
         summary="The 360° view of a member",
         description="Profile, balances, open lots, holds, the newest statement lines, tier "
                     "history, flights, claims, adjustments and the member's audit trail, "
                     "including the history of duplicates merged into the member. Recorded "
                     "in the audit log.",
         responses=problems(*AUTH, MemberNotFound))
    async def view(self, request: Request[Any, Any, Any], card: CardPath,
                   state: State) -> Member360:
        ctx = staff(request)
        result: Member360 = await state.db.transaction(
            lambda s: ProfileService(s, state.settings, state.system_accounts, ctx)
            .view(card))
        return result

    @get("/{card:str}/statement", operation_id="getStaffMemberStatement",
         summary="A member's statement, newest first, with cursor pagination",
         responses=problems(*AUTH, MemberNotFound, ValidationFailed, InvalidCursor))
    async def statement(self, request: Request[Any, Any, Any], card: CardPath, state: State,
                        cursor: Cursor = None,
                        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
                        unit: Annotated[Unit, QueryParameter()] = Unit.MILES
                        ) -> StatementPage:
        ctx = staff(request)
        page: StatementPage = await state.db.transaction(
            lambda s: ProfileService(s, state.settings, state.system_accounts, ctx)
            .statement(card, unit=unit, cursor=cursor, limit=limit))
        return page

    @post("/{card:str}/adjustments", operation_id="createAdjustment", status_code=201,
          summary="Credit or debit a member's balance with a reason",
          description=(
              "Within the caller's role limits (per adjustment, and per UTC day and unit; "
              "`listAdjustmentLimits`) it posts at once (`status: posted`); above them it "
              "waits for a supervisor (`status: pending_approval`, `pendingReason`). A debit "
              "beyond the available balance is refused with 409 `insufficient_miles`."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, MemberNotFound, MemberClosed,
                             ReasonCodeNotFound, ReasonCodeInactive, InsufficientMiles,
                             AccountClosed, *IDEMPOTENCY_PROBLEMS))
    async def adjust(self, request: Request[Any, Any, Any], card: CardPath,
                     data: JSONBody[AdjustmentRequest], state: State,
                     idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[AdjustmentOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> AdjustmentOut:
            return await AdjustmentService(session, state.system_accounts, ctx).create(
                card, data)

        return await idempotent(request, ctx.principal, state.db, work, key=idempotency_key)

    @post("/{card:str}/lock", operation_id="lockMember", status_code=200,
          summary="Lock a member: they can no longer redeem, gift or pool",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, MemberNotFound, MemberNotActive,
                             *IDEMPOTENCY_PROBLEMS))
    async def lock(self, request: Request[Any, Any, Any], card: CardPath,
                   data: JSONBody[ReasonRequest], state: State,
                   idempotency_key: IdempotencyKeyHeader = None
                   ) -> Response[MemberStatusOut]:
        return await self._set_locked(request, card, data, state, idempotency_key, True)

    @post("/{card:str}/unlock", operation_id="unlockMember", status_code=200,
          summary="Unlock a locked member",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, MemberNotFound, MemberNotLocked,
                             *IDEMPOTENCY_PROBLEMS))
    async def unlock(self, request: Request[Any, Any, Any], card: CardPath,
                     data: JSONBody[ReasonRequest], state: State,
                     idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[MemberStatusOut]:
        return await self._set_locked(request, card, data, state, idempotency_key, False)

    async def _set_locked(self, request: Request[Any, Any, Any], card: str,
                          data: ReasonRequest, state: State, key: str | None,
                          locked: bool) -> Response[MemberStatusOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> MemberStatusOut:
            return await MemberOperations(session, state.settings, state.system_accounts,
                                          ctx).set_locked(card, locked, data.reason)

        return await idempotent(request, ctx.principal, state.db, work, key=key,
                                status_code=200)

    @post("/{card:str}/merge", operation_id="mergeMember", status_code=200,
          guards=[supervisors],
          summary="Merge a duplicate member into another (supervisor)",
          description=(
              "Refused with 409 `merge_pending_holds` while the duplicate has pending holds. "
              "One `merge` journal entry moves every unit's balance; the moved MILES keep "
              "the latest expiry of the duplicate's lots. The duplicate is closed (it can "
              "no longer sign in or earn) and points to the target, whose 360° view shows "
              "its flights, claims and tier history. Merging again answers the same."),
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, MemberNotFound, MergeIntoSelf,
                             MergeTargetClosed, MemberClosed, MergedElsewhere,
                             MergePendingHolds, MergeFamilyPool, InsufficientMiles,
                             AccountClosed,
                             *IDEMPOTENCY_PROBLEMS))
    async def merge(self, request: Request[Any, Any, Any], card: CardPath,
                    data: JSONBody[MergeRequest], state: State,
                    idempotency_key: IdempotencyKeyHeader = None) -> Response[MergeOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> MergeOut:
            return await MemberOperations(session, state.settings, state.system_accounts,
                                          ctx).merge(card, data.into_card_number.strip(),
                                                     data.reason)

        return await idempotent(request, ctx.principal, state.db, work, key=idempotency_key,
                                status_code=200)


class StaffAdjustmentsController(Controller):
    path = "/staff/adjustments"
    tags = ["call centre"]
    guards = [call_centre]

    @get("", operation_id="listAdjustments",
         summary="Adjustments, newest first; the approval queue is status=pending_approval",
         description="Agents see their own; supervisors and admins see everyone's.",
         responses=problems(*AUTH, ValidationFailed, InvalidCursor))
    async def list_adjustments(
        self, request: Request[Any, Any, Any], state: State,
        status: Annotated[str | None, QueryParameter(
            pattern="^(posted|pending_approval|rejected)$")] = None,
        cursor: Cursor = None, limit: Limit = 20,
    ) -> AdjustmentPage:
        ctx = staff(request)
        page: AdjustmentPage = await state.db.transaction(
            lambda s: AdjustmentService(s, state.system_accounts, ctx).list(
                status=status, cursor=cursor, limit=limit))
        return page

    @get("/{adjustment_id:int}", operation_id="getAdjustment", summary="One adjustment",
         responses=problems(*AUTH, AdjustmentNotFound))
    async def get_adjustment(self, request: Request[Any, Any, Any], adjustment_id: AdjustmentId,
                             state: State) -> AdjustmentOut:
        ctx = staff(request)
        result: AdjustmentOut = await state.db.transaction(
            lambda s: AdjustmentService(s, state.system_accounts, ctx).get(adjustment_id))
        return result

    @post("/{adjustment_id:int}/approve", operation_id="approveAdjustment",
          status_code=200, guards=[supervisors],
          summary="Approve and post a pending adjustment (supervisor; not one's own)",
          description="Of two supervisors approving at once, one posts it and the other "
                      "gets 409 `adjustment_not_pending`.",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, AdjustmentNotFound, OwnAdjustment,
                             AdjustmentNotPending, MemberClosed, InsufficientMiles,
                             AccountClosed, *IDEMPOTENCY_PROBLEMS))
    async def approve(self, request: Request[Any, Any, Any], adjustment_id: AdjustmentId,
                      data: JSONBody[Decision], state: State,
                      idempotency_key: IdempotencyKeyHeader = None
                      ) -> Response[AdjustmentOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> AdjustmentOut:
            return await AdjustmentService(session, state.system_accounts, ctx).approve(
                adjustment_id, data.comment)

        return await idempotent(request, ctx.principal, state.db, work, key=idempotency_key,
                                status_code=200)

    @post("/{adjustment_id:int}/reject", operation_id="rejectAdjustment",
          status_code=200, guards=[supervisors],
          summary="Reject a pending adjustment (supervisor; not one's own)",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, AdjustmentNotFound, OwnAdjustment,
                             AdjustmentNotPending, *IDEMPOTENCY_PROBLEMS))
    async def reject(self, request: Request[Any, Any, Any], adjustment_id: AdjustmentId,
                     data: JSONBody[Decision], state: State,
                     idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[AdjustmentOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> AdjustmentOut:
            return await AdjustmentService(session, state.system_accounts, ctx).reject(
                adjustment_id, data.comment)

        return await idempotent(request, ctx.principal, state.db, work, key=idempotency_key,
                                status_code=200)


class StaffEntriesController(Controller):
    path = "/staff/entries"
    tags = ["call centre"]
    guards = [supervisors]

    @post("/{entry_id:int}/reversal", operation_id="reverseEntry", status_code=201,
          summary="Reverse a journal entry (supervisor)",
          description="A new entry with every posting negated; an entry is reversed at "
                      "most once (409 `already_reversed`).",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, EntryNotFound, AlreadyReversed,
                             NotReversible, InsufficientMiles, AccountClosed,
                             *IDEMPOTENCY_PROBLEMS))
    async def reverse(self, request: Request[Any, Any, Any], entry_id: EntryId,
                      data: JSONBody[ReasonRequest], state: State,
                      idempotency_key: IdempotencyKeyHeader = None
                      ) -> Response[ReversalOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> ReversalOut:
            return await MemberOperations(session, state.settings, state.system_accounts,
                                          ctx).reverse(entry_id, data.reason)

        return await idempotent(request, ctx.principal, state.db, work, key=idempotency_key)


class StaffReferenceController(Controller):
    """Reason codes and adjustment limits: read by the call centre, managed by admins."""

    path = "/staff"
    tags = ["call centre"]
    guards = [call_centre]

    @get("/reason-codes", operation_id="listReasonCodes", summary="Adjustment reason codes",
         responses=problems(*AUTH))
    async def reason_codes(self, request: Request[Any, Any, Any], state: State,
                           active: Annotated[bool | None, QueryParameter(
                               description="true: only those usable now")] = None
                           ) -> list[ReasonCodeOut]:
        ctx = staff(request)
        rows = await state.db.transaction(
            lambda s: AdjustmentService(s, state.system_accounts, ctx).reason_codes(
                active_only=bool(active)))
        return [reason_code_out(r) for r in rows]

    @post("/reason-codes", operation_id="createReasonCode", status_code=201,
          guards=[admins], summary="Add a reason code (admin)",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, ReasonCodeExists,
                             *IDEMPOTENCY_PROBLEMS))
    async def create_reason_code(self, request: Request[Any, Any, Any],
                                 data: JSONBody[ReasonCodeCreate], state: State,
                                 idempotency_key: IdempotencyKeyHeader = None
                                 ) -> Response[ReasonCodeOut]:
        ctx = staff(request)

        async def work(session: AsyncSession) -> ReasonCodeOut:
            return reason_code_out(await AdjustmentService(
                session, state.system_accounts, ctx).add_reason_code(data))

        return await idempotent(request, ctx.principal, state.db, work, key=idempotency_key)

    @post("/reason-codes/{code:str}/deactivate", operation_id="deactivateReasonCode",
          status_code=200, guards=[admins],
          summary="Deactivate a reason code (admin); adjustments made with it keep it",
          responses=problems(*AUTH, ReasonCodeNotFound))
    async def deactivate(self, request: Request[Any, Any, Any],
                         code: Annotated[str, Parameter(max_length=32)],
                         state: State) -> ReasonCodeOut:
        return await self._set_active(request, code, state, False)

    @post("/reason-codes/{code:str}/activate", operation_id="activateReasonCode",
          status_code=200, guards=[admins], summary="Reactivate a reason code (admin)",
          responses=problems(*AUTH, ReasonCodeNotFound))
    async def activate(self, request: Request[Any, Any, Any],
                       code: Annotated[str, Parameter(max_length=32)],
                       state: State) -> ReasonCodeOut:
        return await self._set_active(request, code, state, True)

    async def _set_active(self, request: Request[Any, Any, Any], code: str, state: State,
                          active: bool) -> ReasonCodeOut:
        ctx = staff(request)
        row = await state.db.transaction(
            lambda s: AdjustmentService(s, state.system_accounts, ctx)
            .set_reason_code_active(code, active))
        return reason_code_out(row)

    @get("/adjustment-limits", operation_id="listAdjustmentLimits",
         summary="What each role may adjust on its own authority, per adjustment and per "
                 "UTC day (in each unit)",
         responses=problems(*AUTH))
    async def limits(self, request: Request[Any, Any, Any], state: State) -> list[LimitOut]:
        ctx = staff(request)
        rows = await state.db.transaction(
            lambda s: AdjustmentService(s, state.system_accounts, ctx).limits())
        return [limit_out(r) for r in rows]

    @put("/adjustment-limits/{role:str}", operation_id="setAdjustmentLimit",
         guards=[admins], summary="Set a role's adjustment limits (admin)",
         responses=problems(*AUTH, ValidationFailed))
    async def set_limit(self, request: Request[Any, Any, Any],
                        role: Annotated[str, Parameter(
                            pattern="^(agent|supervisor|admin)$")],
                        data: JSONBody[LimitSet], state: State) -> LimitOut:
        ctx = staff(request)
        row = await state.db.transaction(
            lambda s: AdjustmentService(s, state.system_accounts, ctx).set_limit(
                Role(role), data))
        return limit_out(row)


class StaffAuditController(Controller):
    path = "/staff/audit"
    tags = ["call centre"]
    guards = [supervisors]

    @get("", operation_id="searchAuditLog",
         summary="The audit log, newest first (supervisors and admins)",
         description="`actor`: `staff:<id>` or an id; `target`: `member:<card>`, "
                     "`reason_code:<code>`, ... or an id; `from` inclusive, `to` exclusive.",
         responses=problems(*AUTH, ValidationFailed, InvalidCursor))
    async def search(
        self, state: State,
        actor: Annotated[str | None, QueryParameter(max_length=80)] = None,
        action: Annotated[str | None, QueryParameter(max_length=64)] = None,
        target: Annotated[str | None, QueryParameter(max_length=100)] = None,
        since: Annotated[datetime | None, QueryParameter(name="from")] = None,
        until: Annotated[datetime | None, QueryParameter(name="to")] = None,
        cursor: Cursor = None, limit: Limit = 50,
    ) -> AuditPage:
        page: AuditPage = await state.db.transaction(
            lambda s: AuditLog(s).search(actor=actor, action=action, target=target,
                                         since=since, until=until, cursor=cursor,
                                         limit=limit))
        return page

