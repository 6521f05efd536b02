"""Member endpoints of missing-flight claims."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import problems
from lms.auth.guards import current_principal, member_only
from lms.claims.errors import ClaimExists, ClaimWindowClosed, FlightDateInFuture
from lms.claims.schemas import ClaimList, ClaimOut, ClaimRequest
from lms.claims.service import ClaimService
from lms.errors import Forbidden, Unauthorized, ValidationFailed


class MyClaimsController(Controller):
    path = "/me/claims"
    tags = ["members"]
    guards = [member_only]

    @post("", operation_id="claimMissingFlight", status_code=201,
          summary="Claim a flown flight that was not credited",
          description=("Up to 180 days after the flight. The claim stays `pending` until the "
                       "airline's feed sends the coupon, then becomes `credited`; if no coupon "
                       "arrives within 180 days of the flight it is `rejected` with reason "
                       "`no_matching_flight`."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, MemberNotFound, ValidationFailed,
                             ClaimWindowClosed, FlightDateInFuture, ClaimExists,
                             *IDEMPOTENCY_PROBLEMS))
    async def submit(self, request: Request[Any, Any, Any], data: JSONBody[ClaimRequest],
                     state: State, idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[ClaimOut]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> ClaimOut:
            return await ClaimService(session).submit(principal.id, data)

        return await idempotent(request, principal, state.db, work, key=idempotency_key)

    @get("", operation_id="listMyClaims", summary="The member's claims, newest first",
         responses=problems(Unauthorized, Forbidden, MemberNotFound))
    async def list_claims(self, request: Request[Any, Any, Any], state: State) -> ClaimList:
        principal = current_principal(request)
        claims = await state.db.transaction(lambda s: ClaimService(s).list(principal.id))
        return ClaimList(claims=claims)
