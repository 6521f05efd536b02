"""Family pool endpoints of the signed-in member (``/v1/me/family``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import MAX_ID, problems
from lms.auth.guards import current_principal, member_only
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.family.errors import (
    AlreadyInPool,
    AlreadyInvited,
    CoolingOff,
    HeadCannotLeave,
    InvitationNotFound,
    InvitationNotPending,
    InviteeNotFound,
    MemberLocked,
    NotInPool,
    NotPoolHead,
    PoolFull,
    PoolHasHolds,
    PoolMemberNotFound,
)
from lms.family.schemas import (
    DissolveOut,
    FamilyOut,
    InvitationCreate,
    InvitationOut,
    LeaveOut,
)
from lms.family.service import FamilyService
from lms.ledger.errors import InsufficientMiles

AUTH = (Unauthorized, Forbidden)
InvitationPath = Annotated[int, Parameter(ge=1, le=MAX_ID, description="The invitation's id")]
MemberPath = Annotated[int, Parameter(ge=1, le=MAX_ID, description="The member's id")]


def family_service(session: AsyncSession, state: State) -> FamilyService:
    return FamilyService(session, state.system_accounts)


class FamilyController(Controller):
    path = "/me/family"
    tags = ["family"]
    guards = [member_only]

    @get("", operation_id="getMyFamily",
         summary="The caller's family pool: balance, members and their contributions, "
                 "pending invitations; and the invitations waiting for the caller's answer",
         responses=problems(*AUTH))
    async def view(self, request: Request[Any, Any, Any], state: State) -> FamilyOut:
        member_id = current_principal(request).id
        result: FamilyOut = await state.db.transaction(
            lambda s: family_service(s, state).view(member_id))
        return result

    @post("", operation_id="createFamilyPool", status_code=201,
          summary="Create a family pool with the caller as its head",
          description="While in a pool, the members' redeemable miles from flights and "
                      "partners accrue to the pool (status miles stay personal).",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, MemberLocked, AlreadyInPool, CoolingOff,
                             *IDEMPOTENCY_PROBLEMS))
    async def create(self, request: Request[Any, Any, Any], state: State,
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[FamilyOut]:
        member_id = current_principal(request).id

        async def work(session: AsyncSession) -> FamilyOut:
            return await family_service(session, state).create(member_id)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)

    @post("/invitations", operation_id="inviteToFamilyPool", status_code=201,
          summary="Invite a member by card number (head only)",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, ValidationFailed, MemberLocked, NotInPool, NotPoolHead,
                             InviteeNotFound, AlreadyInPool, AlreadyInvited, PoolFull,
                             *IDEMPOTENCY_PROBLEMS))
    async def invite(self, request: Request[Any, Any, Any], state: State,
                     data: JSONBody[InvitationCreate],
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[InvitationOut]:
        member_id = current_principal(request).id

        async def work(session: AsyncSession) -> InvitationOut:
            return await family_service(session, state).invite(member_id, data.card_number)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)

    @post("/invitations/{invitation_id:int}/accept", operation_id="acceptFamilyInvitation",
          status_code=200, summary="Accept an invitation: the caller joins the pool",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, MemberLocked, InvitationNotFound, InvitationNotPending,
                             AlreadyInPool, CoolingOff, PoolFull, *IDEMPOTENCY_PROBLEMS))
    async def accept(self, request: Request[Any, Any, Any], state: State,
                     invitation_id: InvitationPath,
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[FamilyOut]:
        member_id = current_principal(request).id

        async def work(session: AsyncSession) -> FamilyOut:
            return await family_service(session, state).accept(member_id, invitation_id)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key, status_code=200)

    @post("/invitations/{invitation_id:int}/decline", operation_id="declineFamilyInvitation",
          status_code=200, summary="Decline an invitation",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, InvitationNotFound, InvitationNotPending,
                             *IDEMPOTENCY_PROBLEMS))
    async def decline(self, request: Request[Any, Any, Any], state: State,
                      invitation_id: InvitationPath, idempotency_key: IdempotencyKeyHeader = None
                      ) -> Response[InvitationOut]:
        member_id = current_principal(request).id

        async def work(session: AsyncSession) -> InvitationOut:
            return await family_service(session, state).decline(member_id, invitation_id)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key, status_code=200)

    @post("/members/{member_id:int}/remove", operation_id="removeFamilyMember",
          status_code=200,
          summary="Remove a member from the pool (head only)",
          description="The member takes their contribution's share of the pool's available "
                      "miles, rounded down (docs/family-pools.md).",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, NotInPool, NotPoolHead, HeadCannotLeave,
                             PoolMemberNotFound, InsufficientMiles, *IDEMPOTENCY_PROBLEMS))
    async def remove(self, request: Request[Any, Any, Any], state: State,
                     member_id: MemberPath,
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[LeaveOut]:
        head_id = current_principal(request).id

        async def work(session: AsyncSession) -> LeaveOut:
            return await family_service(session, state).remove(head_id, member_id)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key, status_code=200)

    @post("/leave", operation_id="leaveFamilyPool", status_code=200,
          summary="Leave the pool (members other than the head)",
          description="The leaver takes their contribution's share of the pool's available "
                      "miles, rounded down; a cooling-off period follows before they can "
                      "create or join another pool.",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, NotInPool, HeadCannotLeave, InsufficientMiles,
                             *IDEMPOTENCY_PROBLEMS))
    async def leave(self, request: Request[Any, Any, Any], state: State,
                    idempotency_key: IdempotencyKeyHeader = None) -> Response[LeaveOut]:
        member_id = current_principal(request).id

        async def work(session: AsyncSession) -> LeaveOut:
            return await family_service(session, state).leave(member_id)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key, status_code=200)

    @post("/dissolve", operation_id="dissolveFamilyPool", status_code=200,
          summary="Dissolve the pool (head only)",
          description="The pool's balance goes to its members in proportion to their "
                      "contributions (largest remainder, summing exactly) in one entry, "
                      "and the pool's account is closed. Refused while miles are held.",
          response_headers=REPLAYED_HEADER,
          responses=problems(*AUTH, NotInPool, NotPoolHead, PoolHasHolds,
                             *IDEMPOTENCY_PROBLEMS))
    async def dissolve(self, request: Request[Any, Any, Any], state: State,
                       idempotency_key: IdempotencyKeyHeader = None) -> Response[DissolveOut]:
        head_id = current_principal(request).id

        async def work(session: AsyncSession) -> DissolveOut:
            return await family_service(session, state).dissolve(head_id)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key, status_code=200)
