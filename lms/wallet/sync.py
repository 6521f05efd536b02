"""Keeping wallet cards current: the outbox consumer and the sync that pushes.

1. ``WalletConsumer`` sees every domain event that may change a balance or a tier. In the
   relay's transaction it moves the member's pass ``updated_at`` and, for the first change of
   a window, sets ``sync_due_at`` and enqueues ``wallet.sync_pass`` for that moment. A burst of
   changes therefore leads to one sync per window, and nothing is enqueued for the many
   members without a wallet card.
2. ``sync_due`` claims due passes (SKIP LOCKED), sends one APNs push per registered device and
   the new balance and tier to Google, forgets devices APNs calls gone (410), and puts the
   pass back in the queue with a growing delay when a push or update should be retried.
   The beat schedule also runs it every few seconds, which catches a task that ran before the
   relay committed, or was lost.

A claimed sync is sent at most once: a worker dying between the claim and the push loses
that push, and devices see the change the next time they ask or the next change pushes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.outbox.relay import relay_session
from lms.outbox.repository import Event
from lms.settings import Settings
from lms.wallet import google
from lms.wallet.apns import ApnsConfig, Outcome, push_pass_updates
from lms.wallet.certs import read_service_account
from lms.wallet.repository import PassRow, Registration, WalletRepository
from lms.wallet.service import WalletService

log = logging.getLogger(__name__)

# Topics that can change what a card shows (its balance or tier). Prefixes, so that events
# added by later capabilities (gifts, purchases, pools, adjustments) are covered too.
CARD_TOPIC_PREFIXES = ("miles.", "hold.", "redemption.", "tier.", "gift.", "purchase.",
                       "family.", "pool.", "status.", "adjustment.", "refund.")
# Announcements that change nothing yet.
NOT_CARD_TOPICS = frozenset({"miles.expiring", "purchase.created", "purchase.expired"})
# After this many seconds a task is late enough to be sure the relay committed.
ENQUEUE_GRACE_SECONDS = 1.0
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 600.0

Enqueue = Callable[[int, float], None]


def concerns_card(topic: str) -> bool:
    return topic.startswith(CARD_TOPIC_PREFIXES) and topic not in NOT_CARD_TOPICS


def as_id(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class WalletConsumer:
    """Outbox consumer; ``enqueue(pass_id, countdown_seconds)`` sends ``wallet.sync_pass``.
    Safe to see an event twice: a second mark only moves the tag again."""

    def __init__(self, settings: Settings, enqueue: Enqueue) -> None:
        self.settings = settings
        self.enqueue = enqueue

    async def __call__(self, event: Event) -> None:
        if not concerns_card(event.topic):
            return
        member_id = as_id(event.payload.get("memberId"))
        account_id = as_id(event.payload.get("accountId"))
        if member_id is None and account_id is None:
            return
        session = relay_session.get()
        changed = await WalletRepository(session).mark_changed(
            member_id=member_id, account_id=account_id,
            window_seconds=self.settings.wallet_push_window_seconds)
        now = datetime.now(UTC)
        for c in changed:
            if c.fresh and c.has_subscribers:
                wait = max(0.0, (c.sync_due_at - now).total_seconds())
                self.enqueue(c.pass_id, wait + ENQUEUE_GRACE_SECONDS)


@dataclass(frozen=True, slots=True)
class Claimed:
    row: PassRow
    registrations: list[Registration]
    google_object: dict[str, object] | None
    google_patch: dict[str, object] | None


@dataclass
class SyncReport:
    passes: int = 0
    pushes: int = 0
    gone: int = 0
    google_updates: int = 0
    retries: int = 0


def google_config(settings: Settings) -> google.GoogleConfig | None:
    """Updates go to Google only with a configured service account (the development key
    would be refused)."""
    if settings.google_service_account_file is None:
        return None
    return google.GoogleConfig(account=read_service_account(settings.google_service_account_file),
                               token_uri=settings.google_token_uri,
                               api_base=settings.google_wallet_api_base.rstrip("/"),
                               timeout=settings.google_timeout_seconds)


async def claim(session: AsyncSession, settings: Settings, system: SystemAccounts,
                limit: int, pass_id: int | None, with_google: bool) -> list[Claimed]:
    repo = WalletRepository(session)
    service = WalletService(session, settings, system)
    claimed = []
    for row in await repo.claim_due(limit, pass_id):
        obj = patch = None
        if with_google and row.google_issued_at is not None:
            content = await service.content(await service.member(row.member_id),
                                            row.serial_number, "")
            obj = google.loyalty_object(settings, content)
            patch = google.changing_fields(content)
        claimed.append(Claimed(row, await repo.registrations(row.id), obj, patch))
    return claimed


async def sync_due(db: Database, settings: Settings, *, pass_id: int | None = None,
                   limit: int = 100) -> SyncReport:
    """Push the passes whose sync is due (only ``pass_id`` if given)."""
    apns = ApnsConfig.from_settings(settings)
    gconf = google_config(settings)
    system = SystemAccounts(settings.system_account_shards)
    claimed = await db.transaction(
        lambda s: claim(s, settings, system, limit, pass_id, gconf is not None))
    report = SyncReport(passes=len(claimed))
    results: list[tuple[Claimed, dict[str, Outcome], Outcome | None]] = []
    async with httpx.AsyncClient(timeout=settings.google_timeout_seconds) as http:
        gclient = google.GoogleWalletClient(gconf, http) if gconf else None
        for c in claimed:
            pushed: dict[str, Outcome] = {}
            if apns is not None and c.registrations:
                pushed = await push_pass_updates(apns, [r.push_token for r in c.registrations])
            gresult = None
            if gclient is not None and c.google_object is not None and c.google_patch:
                gresult = await gclient.upsert(c.google_object, c.google_patch)
            results.append((c, pushed, gresult))

    async def record(session: AsyncSession) -> None:
        repo = WalletRepository(session)
        for c, pushed, gresult in results:
            report.pushes += sum(1 for o in pushed.values() if o is Outcome.SENT)
            report.google_updates += gresult is Outcome.SENT
            gone = [token for token, o in pushed.items() if o is Outcome.GONE]
            report.gone += len(gone)
            await repo.drop_push_tokens(c.row.id, gone)
            if Outcome.RETRY in pushed.values() or gresult is Outcome.RETRY:
                if c.row.sync_attempts + 1 >= settings.wallet_sync_max_attempts:
                    log.warning("wallet pass %s: giving up after %d attempts",
                                c.row.serial_number, c.row.sync_attempts + 1)
                    await repo.sync_succeeded(c.row.id)
                    continue
                report.retries += 1
                delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** c.row.sync_attempts)
                await repo.retry_later(c.row.id, delay)
            elif c.row.sync_attempts:
                await repo.sync_succeeded(c.row.id)

    if results:
        await db.transaction(record)
    return report
