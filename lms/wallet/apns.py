"""Pushes to Apple Push Notification service over HTTP/2 with token authentication.

A pass update notification is a POST of ``{}`` to ``/3/device/<push token>`` with the pass type
identifier as topic: the device then asks the PassKit web service what changed. The bearer
token is an ES256 JWT made with the team's .p8 key; Apple refuses tokens older than an hour and
throttles ones renewed more often than every 20 minutes, so one is reused for 50 minutes.
"""

from __future__ import annotations

import enum
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import httpx
import jwt

from lms.settings import Settings

log = logging.getLogger(__name__)

TOKEN_LIFETIME_SECONDS = 50 * 60


class Outcome(enum.StrEnum):
    SENT = "sent"
    # The device no longer wants pushes for this pass: forget the registration.
    GONE = "gone"
    # Worth trying again later (throttled, APNs unavailable, network).
    RETRY = "retry"
    # Refused for a reason a retry will not fix (bad token, bad topic); logged.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ApnsConfig:
    host: str
    key_path: Path
    key_id: str
    team_id: str
    topic: str
    ca_bundle: Path | None
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ApnsConfig | None:
        """None when no APNs key is configured: nothing is pushed then."""
        if settings.apns_key is None:
            return None
        return cls(host=settings.apns_host, key_path=settings.apns_key,
                   key_id=settings.apns_key_id,
                   team_id=settings.apns_team_id or settings.apple_team_identifier,
                   topic=settings.apple_pass_type_identifier,
                   ca_bundle=settings.apns_ca_bundle, timeout=settings.apns_timeout_seconds)


class ProviderToken:
    """The APNs provider JWT, renewed every ``TOKEN_LIFETIME_SECONDS``; one per key and
    process, shared by the tasks of a worker."""

    def __init__(self, key_path: Path, key_id: str, team_id: str) -> None:
        self.key_path, self.key_id, self.team_id = key_path, key_id, team_id
        self._lock = threading.Lock()
        self._token = ""
        self._issued_at = 0.0

    def get(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        with self._lock:
            if not self._token or now - self._issued_at >= TOKEN_LIFETIME_SECONDS:
                self._token = jwt.encode({"iss": self.team_id, "iat": int(now)},
                                         self.key_path.read_bytes(), algorithm="ES256",
                                         headers={"kid": self.key_id})
                self._issued_at = now
            return self._token


@lru_cache(maxsize=4)
def provider_token(key_path: Path, key_id: str, team_id: str) -> ProviderToken:
    return ProviderToken(key_path, key_id, team_id)


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    context.set_alpn_protocols(["h2"])
    return context


def outcome_of(status: int) -> Outcome:
    if status == 200:
        return Outcome.SENT
    if status == 410:
        return Outcome.GONE
    if status == 429 or status >= 500:
        return Outcome.RETRY
    return Outcome.FAILED


async def push_pass_updates(config: ApnsConfig, push_tokens: Sequence[str]
                            ) -> dict[str, Outcome]:
    """Tell each device that a pass changed; one HTTP/2 connection carries every request."""
    token = provider_token(config.key_path, config.key_id, config.team_id).get()
    headers = {"authorization": f"bearer {token}", "apns-topic": config.topic,
               "apns-push-type": "background", "apns-priority": "5",
               "content-type": "application/json"}
    results: dict[str, Outcome] = {}
    async with httpx.AsyncClient(http2=True, verify=ssl_context(config.ca_bundle),
                                 timeout=config.timeout,
                                 base_url=f"https://{config.host}") as client:
        for push_token in dict.fromkeys(push_tokens):
            try:
                response = await client.post(f"/3/device/{push_token}", content=b"{}",
                                             headers=headers)
            except httpx.HTTPError as exc:
                log.warning("APNs push failed: %s", exc)
                results[push_token] = Outcome.RETRY
                continue
            results[push_token] = outcome_of(response.status_code)
            if results[push_token] is Outcome.FAILED:
                log.warning("APNs refused a pass update push: %s %s",
                            response.status_code, response.text[:200])
    return results
