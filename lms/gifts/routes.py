"""Gift endpoints of the signed-in member (``/v1/me/gifts``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, QueryParameter

from lms.api.idempotency import (
    IDEMPOTENCY_REQUIRED_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent_grouped,
)
from lms.api.openapi import problems
from lms.auth.guards import current_principal, member_only
from lms.clock import utcnow
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.family.errors import MemberLocked
from lms.gifts.errors import (
    GiftLimitExceeded,
    GiftTooSmall,
    GiftToSelf,
    RecipientNotActive,
    RecipientNotFound,
)
from lms.gifts.schemas import GiftCreate, GiftOut, GiftPage, GiftTermsOut
from lms.gifts.service import (
    GIFT_FUNCTION,
    GIFT_SHARED_ARGUMENTS,
    GiftService,
    gift_arguments,
    gift_refusal,
)
from lms.ledger.errors import InsufficientMiles


class GiftController(Controller):
    path = "/me/gifts"
    tags = ["gifts"]
    guards = [member_only]

    @post("", operation_id="sendGift", status_code=201,
          summary="Give miles to another member",
          description=(
              "The recipient is named by card number and last name (compared without regard "
              "to case or accents); an unknown card and a wrong name answer the same 404. "
              "The sender pays the gift plus a fee (a percentage rounded up, at least a "
              "minimum) from their own account; the recipient's miles get a fresh validity. "
              "Daily and yearly limits count the miles given. Requires Idempotency-Key."),
          response_headers=REPLAYED_HEADER,
          responses=problems(Unauthorized, Forbidden, ValidationFailed, MemberLocked,
                             RecipientNotFound, RecipientNotActive, GiftToSelf, GiftTooSmall,
                             GiftLimitExceeded, InsufficientMiles,
                             *IDEMPOTENCY_REQUIRED_PROBLEMS))
    async def send(self, request: Request[Any, Any, Any], state: State,
                   data: JSONBody[GiftCreate],
                   idempotency_key: IdempotencyKeyHeader = None) -> Response[GiftOut]:
        principal = current_principal(request)
        now = utcnow()

        async def arguments(scope: str, key: str, fingerprint: str) -> tuple[Any, ...]:
            return await gift_arguments(state.db, state.system_accounts, scope, key,
                                        fingerprint, principal.id, data, now)

        return await idempotent_grouped(request, principal, state.db, GIFT_FUNCTION, arguments,
                                        key=idempotency_key, refusal=gift_refusal,
                                        shared=GIFT_SHARED_ARGUMENTS)

    @get("", operation_id="listMyGifts",
         summary="Gifts the caller sent or received, newest first, with who and the message",
         responses=problems(Unauthorized, Forbidden, ValidationFailed))
    async def list(
        self, request: Request[Any, Any, Any], state: State,
        direction: Annotated[Literal["sent", "received"], QueryParameter()] = "received",
        before: Annotated[int | None, QueryParameter(
            ge=1, description="Only gifts with a smaller id (the last id of a page)")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> GiftPage:
        member_id = current_principal(request).id
        items = await state.db.transaction(
            lambda s: GiftService(s, state.system_accounts).list(
                member_id, sent=direction == "sent", before=before, limit=limit))
        return GiftPage(items=items)

    @get("/terms", operation_id="getMyGiftTerms",
         summary="The gifting fee and limits in force, and what the caller sent so far",
         responses=problems(Unauthorized, Forbidden, MemberLocked))
    async def terms(self, request: Request[Any, Any, Any], state: State) -> GiftTermsOut:
        member_id = current_principal(request).id
        result: GiftTermsOut = await state.db.transaction(
            lambda s: GiftService(s, state.system_accounts).my_terms(member_id))
        return result
