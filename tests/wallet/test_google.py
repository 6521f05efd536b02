"""Google Wallet: the save link's JWT, and balance changes sent to the (local) Wallet API."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt

from lms.db import Database
from lms.settings import Settings
from tests.conftest import LedgerRunner
from tests.factories import bearer
from tests.wallet.conftest import credit, new_card, pass_state, public_pem, relay_to
from tests.wallet.servers import FakeGoogle, ServerThread

SAVE = "https://pay.google.com/gp/v/save/"
GOOGLE = tuple[FakeGoogle, ServerThread]


async def save_claims(client: httpx.AsyncClient, token: str, settings: Settings
                      ) -> dict[str, Any]:
    response = await client.get("/v1/me/wallet/google", headers=bearer(token))
    assert response.status_code == 200, response.text
    url = response.json()["saveUrl"]
    assert url.startswith(SAVE)
    assert settings.google_service_account_file is not None
    account = json.loads(settings.google_service_account_file.read_text())
    claims: dict[str, Any] = jwt.decode(url.removeprefix(SAVE),
                                        public_pem(account["private_key"].encode()),
                                        algorithms=["RS256"], audience="google")
    assert claims["iss"] == account["client_email"]
    return claims


async def test_save_link_carries_the_card(wclient: httpx.AsyncClient, db: Database,
                                          wallet_settings: Settings,
                                          in_ledger: LedgerRunner[Any]) -> None:
    card = await new_card(wclient, db, firstName="Ada", lastName="Byron")
    await credit(in_ledger, card, 2500)
    claims = await save_claims(wclient, card.access_token, wallet_settings)
    assert claims["typ"] == "savetowallet"
    assert claims["origins"] == ["https://lms.example.com"]
    [obj] = claims["payload"]["loyaltyObjects"]
    issuer = wallet_settings.google_wallet_issuer_id
    assert obj["id"] == f"{issuer}.{card.serial}"
    assert obj["classId"] == f"{issuer}.{wallet_settings.google_wallet_class_suffix}"
    assert obj["state"] == "ACTIVE"
    card_number = card.pass_json["barcode"]["message"]
    assert obj["accountId"] == card_number
    assert obj["accountName"] == "Ada Byron"
    assert obj["barcode"] == {"type": "QR_CODE", "value": card_number,
                              "alternateText": card_number}
    assert obj["loyaltyPoints"] == {"label": "Miles", "balance": {"int": 2500}}
    [tier] = obj["textModulesData"]
    assert tier["header"] == "Tier" and tier["body"]


async def test_credit_updates_the_saved_object(wclient: httpx.AsyncClient, db: Database,
                                               wallet_settings: Settings,
                                               in_ledger: LedgerRunner[Any],
                                               google_server: GOOGLE) -> None:
    from lms.wallet.sync import sync_due

    fake = google_server[0]
    card = await new_card(wclient, db)
    claims = await save_claims(wclient, card.access_token, wallet_settings)
    object_id = claims["payload"]["loyaltyObjects"][0]["id"]
    path = f"/walletobjects/v1/loyaltyObject/{object_id}"

    await credit(in_ledger, card, 800)
    pass_id = (await pass_state(db, card.serial)).id
    assert pass_id in [p for p, _ in await relay_to(db, wallet_settings)]
    report = await sync_due(db, wallet_settings, pass_id=pass_id)
    assert report.google_updates == 1
    calls = [c for c in fake.updates() if object_id in c[1] or c[2].get("id") == object_id]
    # Google did not have the object yet (the member had not saved it): PATCH 404, insert.
    assert [(m, p) for m, p, _ in calls] == [("PATCH", path),
                                            ("POST", "/walletobjects/v1/loyaltyObject")]
    assert fake.objects[object_id]["loyaltyPoints"]["balance"] == {"int": 800}

    # The next change is a PATCH of what changed, authenticated with a cached access token.
    await credit(in_ledger, card, 150)
    no_window = wallet_settings.model_copy(update={"wallet_push_window_seconds": 0.0})
    await relay_to(db, no_window)
    assert (await sync_due(db, wallet_settings, pass_id=pass_id)).google_updates == 1
    method, last_path, body = fake.updates()[-1]
    assert (method, last_path) == ("PATCH", path)
    assert body["loyaltyPoints"]["balance"] == {"int": 950}
    assert fake.objects[object_id]["loyaltyPoints"]["balance"] == {"int": 950}
    assert fake.objects[object_id]["barcode"]["value"] == claims["payload"][
        "loyaltyObjects"][0]["barcode"]["value"]


async def test_no_update_for_members_without_a_google_card(
        wclient: httpx.AsyncClient, db: Database, wallet_settings: Settings,
        in_ledger: LedgerRunner[Any], google_server: GOOGLE) -> None:
    fake = google_server[0]
    card = await new_card(wclient, db)  # Apple pass only, no device registered
    before = len(fake.updates())
    await credit(in_ledger, card, 300)
    pass_id = (await pass_state(db, card.serial)).id
    assert pass_id not in [p for p, _ in await relay_to(db, wallet_settings)]
    assert len(fake.updates()) == before
