"""Wallet fixtures: development certificates in a temporary data directory, a local APNs
(HTTP/2 over TLS with its own CA) and a local Google, and an app configured to use them."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from litestar import Litestar
from sqlalchemy import text

from lms.app import create_app
from lms.db import Database
from lms.ledger.types import EntryKind
from lms.outbox.relay import ALL_TOPICS, ConsumerRegistry, relay
from lms.settings import Settings
from lms.wallet.certs import DEV_APNS_KEY, DEV_GOOGLE_ACCOUNT, ensure_dev_certs
from lms.wallet.sync import WalletConsumer
from tests.conftest import LedgerRunner
from tests.factories import TEST_ACTOR, asgi_client, bearer, register_member
from tests.wallet.servers import FakeApns, FakeGoogle, ServerThread, write_tls_pair

PASS_TYPE = "pass.com.example.lms.card"
TEAM_ID = "TEAMID1234"
KEY_ID = "KEYID98765"


def public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="session")
def wallet_dir(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Path:
    data_dir = tmp_path_factory.mktemp("wallet-data")
    ensure_dev_certs(settings.model_copy(update={"data_dir": data_dir}))
    return data_dir


@pytest.fixture(scope="session")
def apns_server(wallet_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[FakeApns, ServerThread, Path]]:
    ca, cert, key = write_tls_pair(tmp_path_factory.mktemp("apns-tls"))
    fake = FakeApns(public_pem((wallet_dir / "wallet" / DEV_APNS_KEY).read_bytes()),
                    TEAM_ID, KEY_ID)
    server = ServerThread(fake, certfile=cert, keyfile=key).start()
    yield fake, server, ca
    server.stop()


@pytest.fixture(scope="session")
def google_server(wallet_dir: Path) -> Iterator[tuple[FakeGoogle, ServerThread]]:
    account = json.loads((wallet_dir / "wallet" / DEV_GOOGLE_ACCOUNT).read_text())
    fake = FakeGoogle(public_pem(account["private_key"].encode()), account["client_email"])
    server = ServerThread(fake).start()
    fake.token_uri = f"http://127.0.0.1:{server.port}/token"
    yield fake, server
    server.stop()


@pytest.fixture(scope="session")
def wallet_settings(settings: Settings, wallet_dir: Path,
                    apns_server: tuple[FakeApns, ServerThread, Path],
                    google_server: tuple[FakeGoogle, ServerThread]) -> Settings:
    _, apns, ca = apns_server
    fake_google, google = google_server
    return settings.model_copy(update={
        "data_dir": wallet_dir,
        "apple_pass_type_identifier": PASS_TYPE,
        "apple_team_identifier": TEAM_ID,
        "public_base_url": "https://lms.example.com",
        "apns_host": f"127.0.0.1:{apns.port}",
        "apns_key": wallet_dir / "wallet" / DEV_APNS_KEY,
        "apns_key_id": KEY_ID,
        "apns_ca_bundle": ca,
        "wallet_push_window_seconds": 30.0,
        "google_service_account_file": wallet_dir / "wallet" / DEV_GOOGLE_ACCOUNT,
        "google_token_uri": fake_google.token_uri,
        "google_wallet_api_base": f"http://127.0.0.1:{google.port}/walletobjects/v1",
    })


@pytest.fixture(scope="session")
def wallet_app(wallet_settings: Settings, db: Database) -> Litestar:
    return create_app(wallet_settings, db=db)


@pytest.fixture
async def wclient(wallet_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(wallet_app) as c:
        yield c


@dataclass
class Card:
    """A member who downloaded the Apple pass."""

    member_id: int
    account_id: int
    access_token: str
    pass_json: dict[str, Any]
    files: dict[str, bytes]

    @property
    def serial(self) -> str:
        return str(self.pass_json["serialNumber"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"ApplePass {self.pass_json['authenticationToken']}"}


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def account_of(db: Database, member_id: int) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT account_id FROM members WHERE id = :m"),
                                       {"m": member_id})).scalar_one())


async def new_card(client: httpx.AsyncClient, db: Database, **member: Any) -> Card:
    signed_in = await register_member(client, **member)
    token = signed_in["accessToken"]
    response = await client.get("/v1/me/wallet/apple", headers=bearer(token))
    assert response.status_code == 200, response.text
    files = unzip(response.content)
    member_id = signed_in["member"]["id"]
    return Card(member_id, await account_of(db, member_id), token,
                json.loads(files["pass.json"]), files)


async def pass_state(db: Database, serial: str) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT id, sync_due_at, sync_attempts FROM wallet_passes "
            "WHERE serial_number = :s"), {"s": serial})).one()


async def credit(in_ledger: LedgerRunner[Any], card: Card, miles: int) -> None:
    await in_ledger(lambda ledger: ledger.credit(
        card.account_id, miles, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
        events=[("miles.credited", {"memberId": card.member_id, "accountId": card.account_id,
                                    "amount": miles})]))


def registry_with(consumer: WalletConsumer) -> ConsumerRegistry:
    registry = ConsumerRegistry()
    registry.register(ALL_TOPICS, consumer)
    return registry


async def relay_to(db: Database, settings: Settings) -> list[tuple[int, float]]:
    """Run the outbox relay with the wallet consumer; what it enqueued."""
    enqueued: list[tuple[int, float]] = []
    consumer = WalletConsumer(settings, lambda pass_id, wait: enqueued.append((pass_id, wait)))
    await relay(db, registry_with(consumer))
    return enqueued
