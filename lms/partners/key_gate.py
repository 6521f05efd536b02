"""A busy partner key checked without a statement for most of its requests.

Checking a key is a statement of its own before the request's work (CHECK_KEY: the key, its
partner, the caller's address, the rate-limit count), about 0.2 ms of API and PostgreSQL CPU
a partner request, 15% of an accrual's (docs/performance.md). So the check of a key with a
high limit also reserves the key's next request numbers in its window, a thousandth of its
limit and at most ``RESERVE_AT_MOST``, and this process hands them to the key's next requests
itself, checking what it can without the database: the whole key's hash, its expiry, the
caller's address. When the numbers run out, the window turns, or the key was last checked
over ``FRESH_FOR`` seconds ago, the next request is checked by the database again.

What this gives up, and why it is bounded:

- A key revoked, or expired early by a rotation, is refused at once by the process whose
  admin request changed it (its route calls ``forget``), and by every other process within
  ``FRESH_FOR`` seconds; so is a key whose partner was suspended.
- Numbers reserved and not used still count, so a partner may be refused a little early,
  never late. A process drops a check's unused numbers when the check goes stale or the
  window turns. For a key whose checks reserve ``n`` numbers that is at most ``60 * (n - 1)``
  a minute per process (6% of the limit), and only while the key sends the process fewer
  than ``n`` requests a second, far below its limit: a key sending near its limit uses each
  check's numbers within the second. A key of up to 1,999 a minute reserves nothing and is
  counted exactly, as before.

A key with an empty reservation never enters the gate: its every request is one CHECK_KEY.
A process holds at most one reservation per busy key it has served; a stale one is dropped
when the key's next request finds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lms.auth.principal import Principal
from lms.clock import utcnow
from lms.db import Database, RawConnection
from lms.partners import keys
from lms.partners.errors import IpNotAllowed
from lms.partners.service import ApiKeyService, KeyCheck, address_allowed

RESERVE_AT_MOST = 64
FRESH_FOR = 1.0  # seconds


@dataclass(slots=True)
class Reservation:
    """A key this process checked with the database, and its request numbers still unused."""

    key_hash: str
    principal: Principal
    ip_allow_list: list[str] | None
    expires_at: datetime | None
    window: datetime
    next: int
    last: int
    checked_at: float  # on the gate's monotonic clock


class KeyGate:
    """The reservations of this process's busy keys, by key prefix."""

    def __init__(self, fresh_for: float = FRESH_FOR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh_for = fresh_for
        self.clock = clock
        self.reservations: dict[str, Reservation] = {}

    async def check(self, db: Database, token: str, client_host: str | None) -> KeyCheck:
        """The check of a partner request's key: from this process's reservation when it can
        answer, else from the database (which may reserve numbers for the next requests)."""
        now = utcnow()
        local = self.take(token, client_host, now)
        if local is not None:
            return local

        async def check(conn: RawConnection) -> KeyCheck:
            return await ApiKeyService(conn).authenticate(token, client_host, now,
                                                          RESERVE_AT_MOST)

        checked: KeyCheck = await db.autocommit(check)
        self.keep(token, checked)
        return checked

    def take(self, token: str, client_host: str | None, now: datetime) -> KeyCheck | None:
        """This request's check from the key's reservation, or None when the database must
        answer (no reservation, a stale or used-up one, another key with this prefix, an
        expired key)."""
        prefix = keys.key_prefix(token)
        held = self.reservations.get(prefix) if prefix is not None else None
        if prefix is None or held is None or not keys.matches(token, held.key_hash):
            return None
        if (self.clock() - held.checked_at > self.fresh_for or held.next > held.last
                or held.window != now.replace(second=0, microsecond=0)
                or (held.expires_at is not None and held.expires_at <= now)):
            del self.reservations[prefix]
            return None
        # As CHECK_KEY, an address off the allow list is refused and not counted.
        if held.ip_allow_list and not address_allowed(client_host, held.ip_allow_list):
            return KeyCheck(refusal=IpNotAllowed())
        held.next += 1
        return KeyCheck(held.principal)

    def keep(self, token: str, checked: KeyCheck) -> None:
        """Remember a database check's spare numbers; forget the key on any other answer
        (but not for another key that only shares its public prefix)."""
        prefix = keys.key_prefix(token)
        if prefix is None:
            return
        key = checked.key
        if (checked.principal is None or key is None or checked.window is None
                or not checked.spare):
            held = self.reservations.get(prefix)
            if held is not None and keys.matches(token, held.key_hash):
                del self.reservations[prefix]
            return
        self.reservations[prefix] = Reservation(
            key_hash=key["key_hash"], principal=checked.principal,
            ip_allow_list=key["ip_allow_list"], expires_at=key["expires_at"],
            window=checked.window, next=checked.spare.start, last=checked.spare.stop - 1,
            checked_at=self.clock())

    def forget(self, prefix: str) -> None:
        """Check this key with the database again (revoked or changed here)."""
        self.reservations.pop(prefix, None)

    def forget_all(self) -> None:
        self.reservations.clear()


# One per process, shared by its requests; the admin routes that revoke or rotate keys forget
# them in it, so that this process refuses them at once.
GATE = KeyGate()
