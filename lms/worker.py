"""The Celery application: which broker, which task modules, and the beat schedule.

``lms worker`` runs it (see lms.cli). Tasks live in each domain's ``tasks.py``, are named
``domain.verb``, take ids and limits, and open their own database through ``run_in_database``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from celery import Celery
from celery.schedules import crontab

from lms.broker import TRANSPORT as DIRECTORY_TRANSPORT
from lms.db import Database
from lms.settings import Settings, get_settings

T = TypeVar("T")

TASK_MODULES = ("lms.outbox.tasks", "lms.ledger.tasks", "lms.tiers.tasks", "lms.claims.tasks",
                "lms.purchases.tasks", "lms.wallet.tasks", "lms.settlement.tasks",
                "lms.webhooks.tasks", "lms.web.tasks")

RELAY_EVERY_SECONDS = 5.0
WEBHOOK_SWEEP_SECONDS = 5.0

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "outbox-relay": {
        "task": "outbox.relay",
        "schedule": RELAY_EVERY_SECONDS,
        # A relay that waited longer than this is superseded by the next one; without the
        # expiry a stopped worker would come back to a pile of identical relays.
        "options": {"expires": RELAY_EVERY_SECONDS * 2},
    },
    "ledger-expire-holds": {
        "task": "ledger.expire_holds",
        "schedule": 30.0,
        "options": {"expires": 60.0},
    },
    # Lot expiry under the programme's policy (notices ahead, activity extension, breakage in
    # batches of accounts); it replaces the account-at-a-time ledger.expire_lots schedule.
    "tiers-expire-lots": {
        "task": "tiers.expire_lots",
        "schedule": 3600.0,
        "options": {"expires": 1800.0},
    },
    # Upgrades happen at credit time (TierService.reevaluate); the nightly pass catches what
    # that missed and applies the downgrades of periods that ended.
    "tiers-reevaluate-all": {
        "task": "tiers.reevaluate_all",
        "schedule": crontab(hour=1, minute=30),
        "options": {"expires": 6 * 3600.0},
    },
    # Months are closed an hour after they end (settlement.service.CLOSE_GRACE); hourly runs
    # close a month soon after that and catch up on any the job missed.
    "settlement-close-statements": {
        "task": "settlement.close_statements",
        "schedule": crontab(minute=17),
        "options": {"expires": 3000.0},
    },
    # Due webhook deliveries and retries (see lms.webhooks.delivery).
    "webhooks-sweep": {
        "task": "webhooks.sweep",
        "schedule": WEBHOOK_SWEEP_SECONDS,
        "options": {"expires": WEBHOOK_SWEEP_SECONDS * 2},
    },
    # Unpaid purchases stop counting against the yearly cap once they expire.
    "purchases-expire-pending": {
        "task": "purchases.expire_pending",
        "schedule": 60.0,
        "options": {"expires": 120.0},
    },
    # Wallet passes whose push is due: a retry, or a sync task that ran before its relay
    # committed (see lms.wallet.sync).
    "wallet-sync-due": {
        "task": "wallet.sync_due",
        "schedule": 5.0,
        "options": {"expires": 10.0},
    },
    "claims-resolve": {
        "task": "claims.resolve",
        "schedule": 900.0,
        "options": {"expires": 900.0},
    },
}


def broker(settings: Settings) -> tuple[str, str | None, dict[str, Any]]:
    """The broker URL, transport and transport options: ``LMS_BROKER_URL``, or a directory
    broker under the data directory so that a fresh machine needs no RabbitMQ or Redis."""
    if settings.broker_url:
        return settings.broker_url, None, {}
    root = settings.data_dir / "broker"
    # Producers write where consumers read: one directory serves as both ends of the queue.
    folders = {"data_folder_in": root / "queue", "data_folder_out": root / "queue",
               "data_folder_processed": root / "processed", "control_folder": root / "control"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {key: str(path) for key, path in folders.items()}
    # Polling a directory is cheap; the default second would make every task wait for it.
    options |= {"store_processed": False, "polling_interval": 0.2}
    return "filesystem://localhost/", DIRECTORY_TRANSPORT, options


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    url, transport, transport_options = broker(settings)
    app = Celery("lms", broker=url, include=list(TASK_MODULES))
    app.conf.update(
        broker_transport=transport,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # Every task is safe to run twice, so a task whose worker died mid-way is redelivered
        # rather than lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        beat_schedule=BEAT_SCHEDULE,
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app


def run_in_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` with a database of its own on a fresh event loop.

    A task gets its own loop (``asyncio.run``), and asyncpg connections belong to the loop
    that opened them, so the engine is made and disposed of here, per task run.
    """

    async def main() -> T:
        db = Database.from_settings(get_settings())
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


app = create_celery()
