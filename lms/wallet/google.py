"""Google Wallet: "Save to Google Wallet" links and updates of the saved loyalty object.

The save link carries the whole loyalty object in a JWT signed (RS256) with the issuer's
service-account key. Once saved, the object lives at Google and is changed through the Wallet
REST API, authenticated by an OAuth2 access token that the same key obtains (JWT bearer grant).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
import jwt

from lms.settings import Settings
from lms.wallet.apns import Outcome
from lms.wallet.certs import ServiceAccount
from lms.wallet.pkpass import CardContent, parse_rgb

log = logging.getLogger(__name__)

SAVE_URL = "https://pay.google.com/gp/v/save/"
SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Access tokens are renewed this long before Google says they expire.
TOKEN_MARGIN_SECONDS = 120


def object_id(settings: Settings, serial_number: str) -> str:
    return f"{settings.google_wallet_issuer_id}.{serial_number}"


def class_id(settings: Settings) -> str:
    return f"{settings.google_wallet_issuer_id}.{settings.google_wallet_class_suffix}"


def hex_colour(css: str) -> str:
    return "#{:02x}{:02x}{:02x}".format(*parse_rgb(css))


def changing_fields(content: CardContent) -> dict[str, Any]:
    """What a balance or tier change alters: the body of the PATCH."""
    return {
        "state": "ACTIVE",
        "accountName": content.member_name,
        "loyaltyPoints": {"label": "Miles", "balance": {"int": content.miles}},
        "textModulesData": [{"id": "tier", "header": "Tier", "body": content.tier_name}],
        "hexBackgroundColor": hex_colour(content.background_color),
    }


def loyalty_object(settings: Settings, content: CardContent) -> dict[str, Any]:
    return {
        "id": object_id(settings, content.serial_number),
        "classId": class_id(settings),
        "accountId": content.card_number,
        "barcode": {"type": "QR_CODE", "value": content.card_number,
                    "alternateText": content.card_number},
        **changing_fields(content),
    }


def save_url(settings: Settings, account: ServiceAccount, content: CardContent,
             now: float | None = None) -> str:
    claims = {
        "iss": account.email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": int(time.time() if now is None else now),
        "origins": settings.google_wallet_origins or [settings.public_base_url],
        "payload": {"loyaltyObjects": [loyalty_object(settings, content)]},
    }
    headers = {"kid": account.key_id} if account.key_id else None
    token = jwt.encode(claims, account.private_key_pem, algorithm="RS256", headers=headers)
    return SAVE_URL + token


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    account: ServiceAccount
    token_uri: str
    api_base: str
    timeout: float


class AccessTokens:
    """OAuth2 access tokens of one service account, reused until shortly before expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token = ""
        self._expires_at = 0.0

    def cached(self, now: float) -> str | None:
        with self._lock:
            return self._token if self._token and now < self._expires_at else None

    def store(self, token: str, expires_in: float, now: float) -> None:
        with self._lock:
            self._token = token
            self._expires_at = now + max(0.0, expires_in - TOKEN_MARGIN_SECONDS)


@lru_cache(maxsize=4)
def access_tokens(email: str, token_uri: str) -> AccessTokens:
    return AccessTokens()


class GoogleWalletClient:
    def __init__(self, config: GoogleConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client

    async def access_token(self) -> str:
        tokens = access_tokens(self.config.account.email, self.config.token_uri)
        now = time.time()
        if cached := tokens.cached(now):
            return cached
        assertion = jwt.encode({"iss": self.config.account.email, "scope": SCOPE,
                                "aud": self.config.token_uri, "iat": int(now),
                                "exp": int(now) + 3600},
                               self.config.account.private_key_pem, algorithm="RS256")
        response = await self.client.post(self.config.token_uri, data={
            "grant_type": JWT_BEARER, "assertion": assertion})
        response.raise_for_status()
        body = response.json()
        tokens.store(body["access_token"], float(body.get("expires_in", 3600)), now)
        return str(body["access_token"])

    async def upsert(self, obj: dict[str, Any], patch: dict[str, Any]) -> Outcome:
        """PATCH the object; insert it when Google does not have it yet (404)."""
        try:
            headers = {"authorization": f"Bearer {await self.access_token()}"}
            url = f"{self.config.api_base}/loyaltyObject"
            response = await self.client.patch(f"{url}/{obj['id']}", json=patch,
                                               headers=headers)
            if response.status_code == 404:
                response = await self.client.post(url, json=obj, headers=headers)
                if response.status_code == 409:  # inserted meanwhile by another sync
                    response = await self.client.patch(f"{url}/{obj['id']}", json=patch,
                                                       headers=headers)
        except httpx.HTTPError as exc:
            log.warning("Google Wallet update failed: %s", exc)
            return Outcome.RETRY
        if response.is_success:
            return Outcome.SENT
        if response.status_code in (401, 429) or response.status_code >= 500:
            if response.status_code == 401:
                access_tokens(self.config.account.email, self.config.token_uri).store("", 0, 0)
            return Outcome.RETRY
        log.warning("Google Wallet refused an update: %s %s", response.status_code,
                    response.text[:200])
        return Outcome.FAILED
