"""Member endpoint of status: GET /v1/me/tier."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State

from lms.accounts.errors import MemberNotFound
from lms.api.openapi import problems
from lms.auth.guards import current_principal, member_only
from lms.errors import Forbidden, Unauthorized
from lms.tiers.schemas import TierStatus
from lms.tiers.service import TierService


class MyTierController(Controller):
    path = "/me/tier"
    tags = ["members"]
    guards = [member_only]

    @get("", operation_id="getMyTier",
         summary="The member's tier, its validity and what is missing to reach or keep one",
         description=("Status miles and segments are what was earned in the qualification "
                      "window (rolling 12 months or the calendar year, by programme policy). "
                      "`nextTier` says what is missing for the tier above (either figure is "
                      "enough), `keepTier` what is missing by `validUntil` to keep this one."),
         responses=problems(Unauthorized, Forbidden, MemberNotFound))
    async def tier(self, request: Request[Any, Any, Any], state: State) -> TierStatus:
        principal = current_principal(request)
        result: TierStatus = await state.db.transaction(
            lambda s: TierService(s).status(principal.id))
        return result
