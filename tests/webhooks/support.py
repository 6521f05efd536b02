"""Partners with a webhook pointing at a local receiver, and the relay with the webhook
consumers registered."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from lms.db import Database
from lms.outbox.relay import ConsumerRegistry, relay
from lms.webhooks import consumers
from tests.settlement.support import Shop, new_shop
from tests.webhooks.receiver import Receiver

registry = ConsumerRegistry()
consumers.register(registry)


async def hooked_shop(client: httpx.AsyncClient, admin: dict[str, str], db: Database,
                      endpoint: Receiver) -> Shop:
    shop = await new_shop(client, admin, db)
    response = await client.put(f"/v1/admin/partners/{shop.partner['code']}/webhook",
                                json={"url": endpoint.url}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"] == endpoint.url and body["secret"].startswith("whsec_")
    endpoint.secret = body["secret"]
    return shop


async def relay_webhooks(db: Database) -> int:
    return await relay(db, registry)


async def deliveries(db: Database, shop: Shop) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT * FROM webhook_deliveries WHERE partner_id = :p ORDER BY id"),
            {"p": shop.id})
        return [dict(r._mapping) for r in rows]
