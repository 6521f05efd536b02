"""Admin endpoints of partner webhooks: URL, signing secret, recent deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.api.openapi import problems
from lms.auth.guards import admin_only, current_principal
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.partners.errors import PartnerNotFound
from lms.webhooks.delivery import webhook_id
from lms.webhooks.models import WebhookDelivery
from lms.webhooks.schemas import DeliveryOut, WebhookOut, WebhookSet
from lms.webhooks.service import WebhookService

CodePath = Annotated[str, Parameter(max_length=32, description="The partner's code")]


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(id=webhook_id(d.id), event_id=d.event_id, type=d.event_type,
                       status=d.status, attempts=d.attempts, next_attempt_at=d.next_attempt_at,
                       last_attempt_at=d.last_attempt_at, last_status_code=d.last_status_code,
                       last_error=d.last_error, delivered_at=d.delivered_at,
                       created_at=d.created_at, data=d.payload)


class WebhookAdminController(Controller):
    path = "/admin/partners"
    tags = ["partners (admin)"]
    guards = [admin_only]

    def service(self, session: AsyncSession, state: State,
                request: Request[Any, Any, Any]) -> WebhookService:
        return WebhookService(session, state.system_accounts, current_principal(request))

    # Not idempotent on purpose (like API keys): an answer may carry the secret.
    @put("/{code:str}/webhook", operation_id="setPartnerWebhook", status_code=200,
         summary="Set or remove the partner's webhook URL",
         description="The first URL a partner gets comes with a signing secret, in this "
                     "answer only (`secret`); later changes of the URL keep the secret. "
                     "Signatures: docs/partner-api-webhooks.md.",
         responses=problems(Unauthorized, Forbidden, ValidationFailed, PartnerNotFound))
    async def set_webhook(self, request: Request[Any, Any, Any], code: CodePath,
                          data: JSONBody[WebhookSet], state: State) -> WebhookOut:
        result: WebhookOut = await state.db.transaction(
            lambda s: self.service(s, state, request).configure(code, data.url))
        return result

    @post("/{code:str}/webhook-secret", operation_id="rotatePartnerWebhookSecret",
          status_code=201, summary="Generate a new signing secret; shown in this answer only",
          description="The old secret stops at once: every request sent from now on, "
                      "retries included, is signed with the new one.",
          responses=problems(Unauthorized, Forbidden, PartnerNotFound))
    async def rotate_secret(self, request: Request[Any, Any, Any], code: CodePath,
                            state: State) -> WebhookOut:
        result: WebhookOut = await state.db.transaction(
            lambda s: self.service(s, state, request).rotate_secret(code))
        return result

    @get("/{code:str}/webhook-deliveries", operation_id="listPartnerWebhookDeliveries",
         summary="The partner's most recent webhook deliveries, newest first",
         responses=problems(Unauthorized, Forbidden, PartnerNotFound))
    async def deliveries(self, request: Request[Any, Any, Any], code: CodePath, state: State,
                         limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100
                         ) -> list[DeliveryOut]:
        async def work(session: AsyncSession) -> list[DeliveryOut]:
            return [delivery_out(d) for d in
                    await self.service(session, state, request).deliveries(code, limit)]

        result: list[DeliveryOut] = await state.db.transaction(work)
        return result
