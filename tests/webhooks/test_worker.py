"""Webhooks through the real Celery machinery: an ``lms worker`` process relays the outbox
(its webhook consumers enqueue the delivery) and runs ``webhooks.deliver``, which fails once
against the local receiver and succeeds on the retry; a duplicate task sends nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from lms.db import Database
from lms.settings import Settings
from tests.partners.support import admin_headers
from tests.settlement.support import buy, give_back
from tests.test_worker import (  # noqa: F401 - worker is the fixture
    Worker,
    add_events,
    eventually,
    scalar,
    worker,
)
from tests.webhooks.receiver import receiver
from tests.webhooks.support import deliveries, hooked_shop


@pytest.fixture
async def admin(db: Database, settings: Settings) -> dict[str, str]:
    return await admin_headers(db, settings)


async def test_the_worker_enqueues_signs_retries_and_delivers_once(
        worker: Worker, client: httpx.AsyncClient, admin: dict[str, str],  # noqa: F811
        db: Database) -> None:
    with receiver(fail_first=1) as endpoint:
        shop = await hooked_shop(client, admin, db, endpoint)
        await buy(client, shop, 10000, "T-1")
        await give_back(client, shop, "T-1", 2000)

        worker.send("outbox.relay")

        async def enqueued() -> bool:
            return len(await deliveries(db, shop)) == 1
        await eventually(enqueued, "the relay to enqueue the webhook")
        [row] = await deliveries(db, shop)

        async def attempts_made(n: int) -> Any:
            async def check() -> bool:
                return bool((await deliveries(db, shop))[0]["attempts"] == n)
            return check

        worker.send("webhooks.deliver", delivery_id=row["id"], attempts=0)
        await eventually(await attempts_made(1), "the first attempt")
        assert [r.status for r in endpoint.requests] == [500]
        # The task again for the attempt already made (a redelivered message): a no-op.
        worker.send("webhooks.deliver", delivery_id=row["id"], attempts=0)
        worker.send("webhooks.deliver", delivery_id=row["id"], attempts=1)
        await eventually(await attempts_made(2), "the retry")
        worker.send("webhooks.deliver", delivery_id=row["id"], attempts=1)
        worker.send("webhooks.deliver", delivery_id=row["id"], attempts=2)
        # The worker takes one task at a time, in order: once a relay sent after the
        # duplicates has published a marker event, the duplicates have run too.
        [marker] = await add_events(db, f"test.marker.{uuid.uuid4().hex[:8]}", 1)
        worker.send("outbox.relay")

        async def marker_published() -> bool:
            return bool(await scalar(db, "SELECT published_at IS NOT NULL FROM outbox_events "
                                         "WHERE id = :id", id=marker))
        await eventually(marker_published, "the marker relay")
        [done] = await deliveries(db, shop)
        assert (done["status"], done["attempts"], done["last_status_code"]) == (
            "delivered", 2, 200)
        assert [r.status for r in endpoint.requests] == [500, 200]
        assert all(r.signature_ok for r in endpoint.requests)
        assert endpoint.requests[1].json["data"] == {"partnerTxnId": "T-1", "amount": 2000,
                                                     "miles": 30}
