"""SQL of the wallets: passes, their tokens, device registrations, and the sync queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

PASS_COLUMNS = "id, member_id, serial_number, updated_at, google_issued_at, sync_attempts"

CREATE_PASS = text(f"""
INSERT INTO wallet_passes (member_id, serial_number) VALUES (:member_id, :serial)
ON CONFLICT (member_id) DO NOTHING
RETURNING {PASS_COLUMNS}
""")

PASS_BY_MEMBER = text(f"SELECT {PASS_COLUMNS} FROM wallet_passes WHERE member_id = :member_id")

PASS_BY_TOKEN = text(f"""
SELECT {", ".join("p." + c.strip() for c in PASS_COLUMNS.split(","))}
FROM wallet_passes p JOIN wallet_pass_tokens t ON t.pass_id = p.id
WHERE p.serial_number = :serial AND t.token_hash = :token_hash
""")

ADD_TOKEN = text("INSERT INTO wallet_pass_tokens (token_hash, pass_id) VALUES (:h, :pass_id)")

# Downloads beyond the newest ``keep`` lose their tokens: a member who downloads the card
# again and again does not grow the table without end (a phone with a very old copy gets
# 401 and is told to add the card again).
TRIM_TOKENS = text("""
DELETE FROM wallet_pass_tokens WHERE pass_id = :pass_id AND token_hash IN (
  SELECT token_hash FROM wallet_pass_tokens WHERE pass_id = :pass_id
  ORDER BY created_at DESC, token_hash OFFSET :keep)
""")

# Likewise devices: one token may not register an unbounded number of device ids, each of
# which would cost an APNs request per change.
TRIM_REGISTRATIONS = text("""
DELETE FROM wallet_registrations WHERE pass_id = :pass_id AND device_library_identifier IN (
  SELECT device_library_identifier FROM wallet_registrations WHERE pass_id = :pass_id
  ORDER BY updated_at DESC, device_library_identifier OFFSET :keep)
""")

# ``xmax = 0`` tells a fresh insert from an update of an existing row.
REGISTER = text("""
INSERT INTO wallet_registrations (device_library_identifier, pass_id, push_token)
VALUES (:dli, :pass_id, :push_token)
ON CONFLICT (device_library_identifier, pass_id)
DO UPDATE SET push_token = EXCLUDED.push_token, updated_at = now()
RETURNING (xmax = 0) AS inserted
""")

UNREGISTER = text("""
DELETE FROM wallet_registrations WHERE device_library_identifier = :dli AND pass_id = :pass_id
""")

DEVICE_HAS_PASS = text("""
SELECT 1 FROM wallet_registrations r JOIN wallet_pass_tokens t ON t.pass_id = r.pass_id
WHERE r.device_library_identifier = :dli AND t.token_hash = :token_hash
""")

UPDATED_SERIALS = text("""
SELECT p.serial_number, p.updated_at FROM wallet_registrations r
JOIN wallet_passes p ON p.id = r.pass_id
WHERE r.device_library_identifier = :dli
  AND (CAST(:since AS timestamptz) IS NULL OR p.updated_at > :since)
ORDER BY p.serial_number
""")

# A change to a member's balance or tier. The pass's ``updated_at`` moves at once (devices that
# ask see it); an update is owed to devices and Google from ``sync_due_at``, which a burst of
# changes does not move: the first change of a window decides it, and one sync serves all.
# ``clock_timestamp()`` rather than ``now()``: a relay transaction may run for a while, and
# the tag must not fall behind what devices were already told. Every change moves
# ``updated_at`` into a later whole second, because devices compare If-Modified-Since in
# whole seconds: a change in the second of the last download must still read as newer.
MARK_CHANGED = text("""
WITH target AS (
  SELECT p.id, p.sync_due_at FROM wallet_passes p
  WHERE p.member_id = CAST(:member_id AS bigint)
     OR p.member_id = (SELECT m.id FROM members m WHERE m.account_id = CAST(:account_id AS bigint))
  FOR UPDATE
)
UPDATE wallet_passes p
SET updated_at = greatest(clock_timestamp(),
                          date_trunc('second', p.updated_at) + interval '1 second'),
    sync_due_at = coalesce(p.sync_due_at,
                           greatest(clock_timestamp(),
                                    p.synced_at + make_interval(secs => :window)))
FROM target
WHERE p.id = target.id
RETURNING p.id, p.sync_due_at, target.sync_due_at IS NULL AS fresh,
          (p.google_issued_at IS NOT NULL
           OR EXISTS (SELECT 1 FROM wallet_registrations r WHERE r.pass_id = p.id))
            AS has_subscribers
""")

# Take the passes whose sync is due; SKIP LOCKED lets several workers share the queue.
CLAIM_DUE = text(f"""
WITH due AS (
  SELECT id FROM wallet_passes
  WHERE sync_due_at <= now() AND (CAST(:pass_id AS bigint) IS NULL OR id = :pass_id)
  ORDER BY sync_due_at
  LIMIT :limit
  FOR UPDATE SKIP LOCKED
)
UPDATE wallet_passes p SET sync_due_at = NULL, synced_at = now()
FROM due WHERE p.id = due.id
RETURNING {", ".join("p." + c.strip() for c in PASS_COLUMNS.split(","))}
""")

RETRY_LATER = text("""
UPDATE wallet_passes
SET sync_due_at = coalesce(sync_due_at, now() + make_interval(secs => :delay)),
    sync_attempts = sync_attempts + 1
WHERE id = :pass_id
""")

SYNC_SUCCEEDED = text("UPDATE wallet_passes SET sync_attempts = 0 WHERE id = :pass_id")

REGISTRATIONS = text("""
SELECT device_library_identifier, push_token FROM wallet_registrations
WHERE pass_id = :pass_id ORDER BY device_library_identifier
""")

DROP_PUSH_TOKEN = text("""
DELETE FROM wallet_registrations WHERE pass_id = :pass_id AND push_token = :push_token
""")

MARK_GOOGLE_ISSUED = text("""
UPDATE wallet_passes SET google_issued_at = coalesce(google_issued_at, now()) WHERE id = :id
""")


@dataclass(frozen=True, slots=True)
class PassRow:
    id: int
    member_id: int
    serial_number: str
    updated_at: datetime
    google_issued_at: datetime | None
    sync_attempts: int


@dataclass(frozen=True, slots=True)
class Changed:
    pass_id: int
    sync_due_at: datetime
    fresh: bool
    has_subscribers: bool


@dataclass(frozen=True, slots=True)
class Registration:
    device_library_identifier: str
    push_token: str


def pass_row(r: Any) -> PassRow:
    return PassRow(r.id, r.member_id, r.serial_number, r.updated_at, r.google_issued_at,
                   r.sync_attempts)


class WalletRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def pass_for_member(self, member_id: int, serial: str) -> PassRow:
        """The member's pass, created with ``serial`` if there was none."""
        row = (await self.session.execute(CREATE_PASS, {"member_id": member_id,
                                                        "serial": serial})).first()
        if row is None:
            row = (await self.session.execute(PASS_BY_MEMBER, {"member_id": member_id})).one()
        return pass_row(row)

    async def add_token(self, pass_id: int, token_hash: bytes, *, keep: int) -> None:
        await self.session.execute(ADD_TOKEN, {"h": token_hash, "pass_id": pass_id})
        await self.session.execute(TRIM_TOKENS, {"pass_id": pass_id, "keep": keep})

    async def pass_by_token(self, serial: str, token_hash: bytes) -> PassRow | None:
        row = (await self.session.execute(PASS_BY_TOKEN, {"serial": serial,
                                                          "token_hash": token_hash})).first()
        return None if row is None else pass_row(row)

    async def register(self, dli: str, pass_id: int, push_token: str, *, keep: int) -> bool:
        row = (await self.session.execute(REGISTER, {"dli": dli, "pass_id": pass_id,
                                                     "push_token": push_token})).one()
        await self.session.execute(TRIM_REGISTRATIONS, {"pass_id": pass_id, "keep": keep})
        return bool(row.inserted)

    async def unregister(self, dli: str, pass_id: int) -> bool:
        result: Any = await self.session.execute(UNREGISTER, {"dli": dli, "pass_id": pass_id})
        return bool(result.rowcount)

    async def device_has_pass_with_token(self, dli: str, token_hash: bytes) -> bool:
        return (await self.session.execute(DEVICE_HAS_PASS, {
            "dli": dli, "token_hash": token_hash})).first() is not None

    async def updated_serials(self, dli: str, since: datetime | None
                              ) -> list[tuple[str, datetime]]:
        rows = await self.session.execute(UPDATED_SERIALS, {"dli": dli, "since": since})
        return [(r.serial_number, r.updated_at) for r in rows]

    async def mark_changed(self, *, member_id: int | None, account_id: int | None,
                           window_seconds: float) -> list[Changed]:
        rows = await self.session.execute(MARK_CHANGED, {
            "member_id": member_id, "account_id": account_id, "window": window_seconds})
        return [Changed(r.id, r.sync_due_at, r.fresh, r.has_subscribers) for r in rows]

    async def claim_due(self, limit: int, pass_id: int | None = None) -> list[PassRow]:
        rows = await self.session.execute(CLAIM_DUE, {"limit": limit, "pass_id": pass_id})
        return [pass_row(r) for r in rows]

    async def retry_later(self, pass_id: int, delay_seconds: float) -> None:
        await self.session.execute(RETRY_LATER, {"pass_id": pass_id, "delay": delay_seconds})

    async def sync_succeeded(self, pass_id: int) -> None:
        await self.session.execute(SYNC_SUCCEEDED, {"pass_id": pass_id})

    async def registrations(self, pass_id: int) -> list[Registration]:
        rows = await self.session.execute(REGISTRATIONS, {"pass_id": pass_id})
        return [Registration(r.device_library_identifier, r.push_token) for r in rows]

    async def drop_push_tokens(self, pass_id: int, push_tokens: Sequence[str]) -> None:
        for token in push_tokens:
            await self.session.execute(DROP_PUSH_TOKEN, {"pass_id": pass_id,
                                                         "push_token": token})

    async def mark_google_issued(self, pass_id: int) -> None:
        await self.session.execute(MARK_GOOGLE_ISSUED, {"id": pass_id})
