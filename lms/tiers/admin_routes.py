"""Admin API of the tier ladder and programme policies: versions with effective dates."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.errors import RuleVersionExists
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import problems
from lms.auth.guards import admin_only, current_principal
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.tiers.admin import LadderInvalid, TierRules
from lms.tiers.schemas import PolicyIn, PolicyOut, TierVersionIn, TierVersionOut


def admin_actor(request: Request[Any, Any, Any]) -> tuple[str, str, str]:
    principal = current_principal(request)
    return principal.type, str(principal.id), str(principal.role)


class TierAdminController(Controller):
    path = "/admin/programme"
    tags = ["programme"]
    guards = [admin_only]

    @get("/tiers", operation_id="listTierVersions",
         summary="Every version of every tier, oldest first per tier",
         responses=problems(Unauthorized, Forbidden))
    async def list_tiers(self, state: State) -> list[TierVersionOut]:
        result: list[TierVersionOut] = await state.db.transaction(
            lambda s: TierRules(s).tier_versions())
        return result

    @post("/tiers", operation_id="addTierVersion", status_code=201,
          summary="Add a version of a tier (new or changed name, rank, thresholds, colours)",
          description=(
              "It applies from `effectiveFrom` (tomorrow at the earliest) until the tier's "
              "next version; the version in force that day ends there. The tiers in force "
              "that day must still form a ladder: one per rank, the lowest needing nothing, "
              "a higher rank never needing less (422 `ladder_invalid`). Upgrades already "
              "granted keep their validity; the nightly pass applies the new thresholds."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, LadderInvalid,
                             RuleVersionExists, *IDEMPOTENCY_PROBLEMS))
    async def add_tier(self, request: Request[Any, Any, Any], data: JSONBody[TierVersionIn],
                       state: State, idempotency_key: IdempotencyKeyHeader = None
                       ) -> Response[TierVersionOut]:
        actor = admin_actor(request)

        async def work(session: AsyncSession) -> TierVersionOut:
            return await TierRules(session).add_tier_version(data, actor)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)

    @get("/policies", operation_id="listPolicyVersions",
         summary="Every version of the programme policies (qualification, expiry)",
         responses=problems(Unauthorized, Forbidden))
    async def list_policies(self, state: State) -> list[PolicyOut]:
        result: list[PolicyOut] = await state.db.transaction(
            lambda s: TierRules(s).policy_versions())
        return result

    @post("/policies", operation_id="addPolicyVersion", status_code=201,
          summary="Change a policy from a moment on (qualification window, lot expiry)",
          description=(
              "`tier_qualification` rolling_12_months | calendar_year; `expiry_policy` "
              "fixed | activity; `expiry_months` 1-240; `expiry_notice_days` 0-365. Lots "
              "credited before keep the expiry date they were given."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, RuleVersionExists,
                             *IDEMPOTENCY_PROBLEMS))
    async def add_policy(self, request: Request[Any, Any, Any], data: JSONBody[PolicyIn],
                         state: State, idempotency_key: IdempotencyKeyHeader = None
                         ) -> Response[PolicyOut]:
        actor = admin_actor(request)

        async def work(session: AsyncSession) -> PolicyOut:
            return await TierRules(session).add_policy(data, actor)

        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)
