"""The dashboard's wallet buttons: the Apple pass downloaded with the session cookie (and
verified as openssl verifies it), the Google save link, and no buttons when signing cannot
work."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from litestar import Litestar

from lms.app import create_app
from lms.db import Database
from lms.settings import Settings
from lms.wallet.certs import DEV_GOOGLE_ACCOUNT, apple_signing, google_account
from tests.web.support import browser, sign_up

SAVE = "https://pay.google.com/gp/v/save/"


def openssl_verify(folder: Path, files: dict[str, bytes], ca: Path
                   ) -> subprocess.CompletedProcess[bytes]:
    (folder / "signature").write_bytes(files["signature"])
    (folder / "manifest.json").write_bytes(files["manifest.json"])
    return subprocess.run(
        ["openssl", "smime", "-verify", "-binary", "-inform", "DER",
         "-in", str(folder / "signature"), "-content", str(folder / "manifest.json"),
         "-CAfile", str(ca), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, check=False)


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(app) as c:
        yield c


async def test_dashboard_offers_both_wallets(web: httpx.AsyncClient, settings: Settings,
                                             tmp_path: Path) -> None:
    fields = await sign_up(web, firstName="Grace", lastName="Hopper")
    home = await web.get("/")
    assert 'href="/wallet/apple.pkpass"' in home.text
    assert "Add to Apple Wallet" in home.text and "Save to Google Wallet" in home.text

    apple = await web.get("/wallet/apple.pkpass")
    assert apple.status_code == 200
    assert apple.headers["content-type"] == "application/vnd.apple.pkpass"
    assert apple.headers["cache-control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(apple.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    card = json.loads(files["pass.json"])
    names = {f["key"]: f["value"] for f in card["storeCard"]["secondaryFields"]}
    assert names["member"] == f"{fields['firstName']} {fields['lastName']}"
    manifest = json.loads(files["manifest.json"])
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest
    verified = openssl_verify(tmp_path, files, apple_signing(settings).wwdr_certificate)
    assert verified.returncode == 0, verified.stderr

    google = await web.get("/wallet/google")
    assert google.status_code == 303
    url = google.headers["location"]
    assert url.startswith(SAVE)
    account = google_account(settings)
    public = serialization.load_pem_private_key(account.private_key_pem.encode(), None
                                                ).public_key()
    claims: dict[str, Any] = jwt.decode(url.removeprefix(SAVE), public,  # type: ignore[arg-type]
                                        algorithms=["RS256"], audience="google")
    [loyalty] = claims["payload"]["loyaltyObjects"]
    assert loyalty["accountName"] == f"{fields['firstName']} {fields['lastName']}"


async def test_wallet_routes_need_a_session(web: httpx.AsyncClient) -> None:
    for path in ("/wallet/apple.pkpass", "/wallet/google"):
        response = await web.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/sign-in?next={path}"


async def test_no_buttons_when_signing_cannot_work(settings: Settings, db: Database,
                                                   tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    broken = settings.model_copy(update={
        "apple_pass_cert": missing / "cert.pem", "apple_pass_key": missing / "key.pem",
        "apple_wwdr_cert": missing / "wwdr.pem",
        "google_service_account_file": missing / DEV_GOOGLE_ACCOUNT})
    async with browser(create_app(broken, db=db)) as web:
        await sign_up(web)
        home = await web.get("/")
        assert home.status_code == 200
        assert 'id="balance"' in home.text
        assert "Apple Wallet" not in home.text and "Google Wallet" not in home.text
        for path in ("/wallet/apple.pkpass", "/wallet/google"):
            refused = await web.get(path)
            assert refused.status_code == 503
            assert "Wallet cards cannot be issued at the moment." in refused.text
