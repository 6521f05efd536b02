"""Webhook configuration: a partner's URL and its signing secret (shown once, rotated by an
admin; stored as is because signing needs it, see lms.webhooks.models.WebhookSecret)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal
from lms.ledger.service import SystemAccounts
from lms.partners.service import PartnerService
from lms.webhooks.models import WebhookDelivery
from lms.webhooks.repository import WebhookRepository
from lms.webhooks.schemas import WebhookOut
from lms.webhooks.signing import new_secret


class WebhookService:
    def __init__(self, session: AsyncSession, system: SystemAccounts,
                 actor: Principal | None = None) -> None:
        self.repo = WebhookRepository(session)
        self.partners = PartnerService(session, system, actor)

    async def configure(self, code: str, url: str | None) -> WebhookOut:
        """Set (or, with None, remove) the URL. The first time a partner gets a URL it also
        gets a secret, returned in this answer only."""
        partner = await self.partners.set_webhook_url(code, url)
        current = await self.repo.secret(partner.id)
        if url is None or current is not None:
            return WebhookOut(partner_code=partner.code, url=partner.webhook_url,
                              secret_created_at=current.created_at if current else None)
        return await self._new_secret(partner.id, partner.code, partner.webhook_url)

    async def rotate_secret(self, code: str) -> WebhookOut:
        """A new secret at once; the old one no longer signs anything sent from now on."""
        partner = await self.partners.get(code, lock=True)
        return await self._new_secret(partner.id, partner.code, partner.webhook_url)

    async def _new_secret(self, partner_id: int, code: str, url: str | None) -> WebhookOut:
        secret = new_secret()
        stored = await self.repo.set_secret(partner_id, secret)
        await self.partners.audit("partner.webhook_secret_rotated", code,
                                  {"secretCreatedAt": stored.created_at})
        return WebhookOut(partner_code=code, url=url, secret_created_at=stored.created_at,
                          secret=secret)

    async def deliveries(self, code: str, limit: int) -> list[WebhookDelivery]:
        partner = await self.partners.get(code)
        return await self.repo.deliveries(partner.id, limit)
