"""GET /v1/me/wallet/apple: a signed store card, checked as Wallet and openssl check it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy import text

from lms.db import Database
from lms.settings import Settings
from lms.wallet.certs import DEV_CA, DEV_PASS_CERT
from tests.conftest import LedgerRunner
from tests.factories import bearer, register_member
from tests.wallet.conftest import PASS_TYPE, TEAM_ID, credit, new_card, unzip


def openssl_verify(folder: Path, signature: bytes, manifest: bytes, ca: Path
                   ) -> subprocess.CompletedProcess[bytes]:
    (folder / "signature").write_bytes(signature)
    (folder / "manifest.json").write_bytes(manifest)
    return subprocess.run(
        ["openssl", "smime", "-verify", "-binary", "-inform", "DER",
         "-in", str(folder / "signature"), "-content", str(folder / "manifest.json"),
         "-CAfile", str(ca), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, check=False)


async def test_pass_is_a_signed_store_card(wclient: httpx.AsyncClient, db: Database,
                                           wallet_settings: Settings, wallet_dir: Path,
                                           in_ledger: LedgerRunner[Any],
                                           tmp_path: Path) -> None:
    card = await new_card(wclient, db, firstName="Grace", lastName="Hopper")
    await credit(in_ledger, card, 4321)
    response = await wclient.get("/v1/me/wallet/apple", headers=bearer(card.access_token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    files = unzip(response.content)
    assert {"pass.json", "manifest.json", "signature", "icon.png", "icon@2x.png"} <= set(files)

    data = json.loads(files["pass.json"])
    assert data["formatVersion"] == 1
    assert data["passTypeIdentifier"] == PASS_TYPE
    assert data["teamIdentifier"] == TEAM_ID
    assert data["serialNumber"] == card.serial  # one serial per member, every download
    assert data["webServiceURL"] == "https://lms.example.com/v1/passkit"
    assert len(data["authenticationToken"]) >= 16
    assert data["authenticationToken"] != card.pass_json["authenticationToken"]
    fields = {f["key"]: f for part in ("primaryFields", "secondaryFields", "auxiliaryFields")
              for f in data["storeCard"][part]}
    assert fields["miles"]["value"] == 4321
    assert fields["member"]["value"] == "Grace Hopper"
    async with db.engine.connect() as conn:
        member = (await conn.execute(text(
            "SELECT m.card_number, t.name, t.background_color, t.foreground_color, "
            "t.label_color FROM members m JOIN tiers t ON t.code = m.tier "
            "WHERE m.id = :id ORDER BY t.effective_from DESC LIMIT 1"),
            {"id": card.member_id})).one()
    assert fields["tier"]["value"] == member.name
    assert fields["card"]["value"] == member.card_number
    assert (data["backgroundColor"], data["foregroundColor"], data["labelColor"]) == (
        member.background_color, member.foreground_color, member.label_color)
    for barcode in (data["barcode"], *data["barcodes"]):
        assert barcode["format"] == "PKBarcodeFormatQR"
        assert barcode["message"] == barcode["altText"] == member.card_number

    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == set(files) - {"manifest.json", "signature"}
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest

    # The signature: detached PKCS#7 by the pass certificate, carrying the WWDR certificate.
    certs = pkcs7.load_der_pkcs7_certificates(files["signature"])
    folder = wallet_dir / "wallet"
    pass_cert = x509.load_pem_x509_certificate((folder / DEV_PASS_CERT).read_bytes())
    wwdr = x509.load_pem_x509_certificate((folder / DEV_CA).read_bytes())
    assert {c.fingerprint(pass_cert.signature_hash_algorithm)  # type: ignore[arg-type]
            for c in certs} == {c.fingerprint(pass_cert.signature_hash_algorithm)  # type: ignore[arg-type]
                                for c in (pass_cert, wwdr)}
    verified = openssl_verify(tmp_path, files["signature"], files["manifest.json"],
                              folder / DEV_CA)
    assert verified.returncode == 0, verified.stderr
    # ... and it fails for a manifest that was changed after signing.
    forged = files["manifest.json"].replace(b'"pass.json": "', b'"pass.json": "0')
    assert openssl_verify(tmp_path, files["signature"], forged, folder / DEV_CA).returncode != 0


async def test_pass_needs_a_member_token(wclient: httpx.AsyncClient) -> None:
    assert (await wclient.get("/v1/me/wallet/apple")).status_code == 401
    assert (await wclient.get("/v1/me/wallet/google")).status_code == 401
    response = await wclient.get("/v1/me/wallet/apple", headers=bearer("not-a-token"))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_each_member_has_a_serial_of_their_own(wclient: httpx.AsyncClient,
                                                     db: Database) -> None:
    first, second = await new_card(wclient, db), await new_card(wclient, db)
    assert first.serial != second.serial
    again = await wclient.get("/v1/me/wallet/apple", headers=bearer(first.access_token))
    assert json.loads(unzip(again.content)["pass.json"])["serialNumber"] == first.serial


async def test_closed_member_gets_no_card(wclient: httpx.AsyncClient, db: Database) -> None:
    signed_in = await register_member(wclient)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE members SET status = 'closed' WHERE id = :id"),
                           {"id": signed_in["member"]["id"]})
    response = await wclient.get("/v1/me/wallet/apple",
                                 headers=bearer(signed_in["accessToken"]))
    assert response.status_code == 409
    assert response.json()["code"] == "member_closed"
