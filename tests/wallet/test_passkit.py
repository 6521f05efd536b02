"""The PassKit web service, called as a device holding the pass calls it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx

from lms.db import Database
from lms.settings import Settings
from tests.conftest import LedgerRunner
from tests.factories import bearer
from tests.wallet.conftest import PASS_TYPE, Card, credit, new_card, relay_to, unzip

BASE = "/v1/passkit/v1"


def device() -> str:
    return uuid.uuid4().hex


def registration(dli: str, card: Card, pass_type: str = PASS_TYPE) -> str:
    return f"{BASE}/devices/{dli}/registrations/{pass_type}/{card.serial}"


def updatable(dli: str, pass_type: str = PASS_TYPE) -> str:
    return f"{BASE}/devices/{dli}/registrations/{pass_type}"


def latest(card: Card) -> str:
    return f"{BASE}/passes/{PASS_TYPE}/{card.serial}"


async def test_register_list_latest_unregister(wclient: httpx.AsyncClient, db: Database,
                                               wallet_settings: Settings,
                                               in_ledger: LedgerRunner[Any]) -> None:
    card = await new_card(wclient, db)
    dli = device()
    body = {"pushToken": "a" * 64}

    first = await wclient.post(registration(dli, card), json=body, headers=card.auth)
    assert first.status_code == 201
    again = await wclient.post(registration(dli, card), json={"pushToken": "b" * 64},
                               headers=card.auth)
    assert again.status_code == 200

    listed = await wclient.get(updatable(dli))
    assert listed.status_code == 200
    assert listed.json()["serialNumbers"] == [card.serial]
    tag = listed.json()["lastUpdated"]
    unchanged = await wclient.get(updatable(dli), params={"passesUpdatedSince": tag})
    assert unchanged.status_code == 204

    current = await wclient.get(latest(card), headers=card.auth)
    assert current.status_code == 200
    assert current.headers["content-type"] == "application/vnd.apple.pkpass"
    data = json.loads(unzip(current.content)["pass.json"])
    # The device's own token stays in the pass it is sent.
    assert data["authenticationToken"] == card.pass_json["authenticationToken"]
    assert data["serialNumber"] == card.serial
    modified = current.headers["last-modified"]
    not_modified = await wclient.get(latest(card), headers=card.auth | {
        "If-Modified-Since": modified})
    assert not_modified.status_code == 304
    assert not_modified.content == b""

    # A credit moves the pass: it is listed after the tag, and served again in full.
    await credit(in_ledger, card, 700)
    await relay_to(db, wallet_settings)
    changed = await wclient.get(updatable(dli), params={"passesUpdatedSince": tag})
    assert changed.status_code == 200
    assert changed.json()["serialNumbers"] == [card.serial]
    assert int(changed.json()["lastUpdated"]) > int(tag)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    assert (await wclient.get(latest(card), headers=card.auth | {
        "If-Modified-Since": later})).status_code == 304
    refreshed = await wclient.get(latest(card), headers=card.auth | {
        "If-Modified-Since": modified})
    assert refreshed.status_code == 200
    fields = json.loads(unzip(refreshed.content)["pass.json"])["storeCard"]["primaryFields"]
    assert fields[0]["value"] == 700

    gone = await wclient.delete(registration(dli, card), headers=card.auth)
    assert gone.status_code == 200
    assert (await wclient.get(updatable(dli))).status_code == 204


async def test_wrong_or_missing_token_is_401(wclient: httpx.AsyncClient, db: Database) -> None:
    card, other = await new_card(wclient, db), await new_card(wclient, db)
    dli = device()
    body = {"pushToken": "c" * 64}
    wrong = {"Authorization": "ApplePass " + "x" * 43}
    for headers in ({}, wrong, other.auth, bearer(card.access_token),
                    {"Authorization": "ApplePass"}):
        response = await wclient.post(registration(dli, card), json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "pass_unauthorized"
        assert (await wclient.get(latest(card), headers=headers)).status_code == 401
        assert (await wclient.delete(registration(dli, card),
                                     headers=headers)).status_code == 401
    # Nothing was registered by the refused calls.
    assert (await wclient.get(updatable(dli))).status_code == 204
    # A token sent with the list must belong to a pass the device registered.
    assert (await wclient.post(registration(dli, card), json=body,
                               headers=card.auth)).status_code == 201
    assert (await wclient.get(updatable(dli), headers=card.auth)).status_code == 200
    assert (await wclient.get(updatable(dli), headers=other.auth)).status_code == 401


async def test_unknown_pass_type_or_serial(wclient: httpx.AsyncClient, db: Database) -> None:
    card = await new_card(wclient, db)
    dli = device()
    response = await wclient.post(registration(dli, card, "pass.other.type"),
                                  json={"pushToken": "d" * 64}, headers=card.auth)
    assert response.status_code == 404
    assert response.json()["code"] == "pass_type_unknown"
    assert (await wclient.get(updatable(dli, "pass.other.type"))).status_code == 404
    # An unknown serial answers like a wrong token, so serials cannot be probed.
    unknown = await wclient.get(f"{BASE}/passes/{PASS_TYPE}/{'0' * 32}", headers=card.auth)
    assert unknown.status_code == 401


async def test_bad_registration_body(wclient: httpx.AsyncClient, db: Database) -> None:
    card = await new_card(wclient, db)
    for body in ({}, {"pushToken": ""}, {"pushToken": "e" * 500}, {"pushToken": 5}):
        response = await wclient.post(registration(device(), card), json=body,
                                       headers=card.auth)
        assert response.status_code == 422, body


async def test_log_endpoint(wclient: httpx.AsyncClient) -> None:
    response = await wclient.post(f"{BASE}/log", json={"logs": ["Pass download failed"]})
    assert response.status_code == 200
    assert (await wclient.post(f"{BASE}/log", json={"logs": "x"})).status_code == 422


async def test_one_device_several_passes(wclient: httpx.AsyncClient, db: Database) -> None:
    first, second = await new_card(wclient, db), await new_card(wclient, db)
    dli = device()
    for card in (first, second):
        assert (await wclient.post(registration(dli, card), json={"pushToken": "f" * 64},
                                   headers=card.auth)).status_code == 201
    listed = await wclient.get(updatable(dli))
    assert sorted(listed.json()["serialNumbers"]) == sorted([first.serial, second.serial])


async def test_openapi_documents_the_web_service(wclient: httpx.AsyncClient) -> None:
    schema = (await wclient.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    register = paths["/v1/passkit/v1/devices/{deviceLibraryIdentifier}/registrations/"
                     "{passTypeIdentifier}/{serialNumber}"]
    assert {"post", "delete"} <= set(register)
    assert register["post"]["security"] == [{"applePass": []}]
    assert "/v1/passkit/v1/passes/{passTypeIdentifier}/{serialNumber}" in paths
    assert "/v1/passkit/v1/log" in paths
    assert "/v1/me/wallet/apple" in paths and "/v1/me/wallet/google" in paths


async def test_devices_per_pass_are_bounded(wclient: httpx.AsyncClient, db: Database) -> None:
    from lms.wallet.service import DEVICES_PER_PASS

    card = await new_card(wclient, db)
    devices = [device() for _ in range(DEVICES_PER_PASS + 2)]
    for dli in devices:
        assert (await wclient.post(registration(dli, card), json={"pushToken": "g" * 64},
                                   headers=card.auth)).status_code == 201
    # The two oldest registrations made room for the newest.
    for dli in devices[:2]:
        assert (await wclient.get(updatable(dli))).status_code == 204
    for dli in devices[2:]:
        assert (await wclient.get(updatable(dli))).json()["serialNumbers"] == [card.serial]


async def test_tokens_of_old_downloads_expire(wclient: httpx.AsyncClient, db: Database) -> None:
    from lms.wallet.service import TOKENS_PER_PASS

    card = await new_card(wclient, db)
    latest_token = card.auth
    for _ in range(TOKENS_PER_PASS):
        response = await wclient.get("/v1/me/wallet/apple", headers=bearer(card.access_token))
        token = json.loads(unzip(response.content)["pass.json"])["authenticationToken"]
        latest_token = {"Authorization": f"ApplePass {token}"}
    assert (await wclient.get(latest(card), headers=card.auth)).status_code == 401
    assert (await wclient.get(latest(card), headers=latest_token)).status_code == 200
