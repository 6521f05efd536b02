"""``lms wallet dev-certs`` and concurrent first downloads."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from lms.settings import PROJECT_ROOT
from lms.wallet.certs import DEV_APNS_KEY, DEV_FILES, DEV_GOOGLE_ACCOUNT, DEV_PASS_KEY
from tests.factories import bearer, register_member
from tests.wallet.conftest import unzip


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env["LMS_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "lms.cli", "wallet", "dev-certs", *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          check=False)


def test_dev_certs_command_writes_keys_privately_and_prints_no_secret(tmp_path: Path) -> None:
    done = run_cli(tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "wallet"
    assert {p.name for p in folder.iterdir()} == set(DEV_FILES)
    for name in (DEV_PASS_KEY, DEV_APNS_KEY, DEV_GOOGLE_ACCOUNT):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    key = (folder / DEV_PASS_KEY).read_bytes()
    # A second run keeps the set; --force replaces it.
    assert run_cli(tmp_path).returncode == 0
    assert (folder / DEV_PASS_KEY).read_bytes() == key
    assert run_cli(tmp_path, "--force").returncode == 0
    assert (folder / DEV_PASS_KEY).read_bytes() != key
    account = json.loads((folder / DEV_GOOGLE_ACCOUNT).read_text())
    assert account["type"] == "service_account" and account["client_email"]


async def test_concurrent_first_downloads_share_one_serial(wclient: httpx.AsyncClient) -> None:
    signed_in = await register_member(wclient)
    headers = bearer(signed_in["accessToken"])
    responses = await asyncio.gather(*(wclient.get("/v1/me/wallet/apple", headers=headers)
                                       for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    serials = {json.loads(unzip(r.content)["pass.json"])["serialNumber"] for r in responses}
    assert len(serials) == 1


def test_demo_credentials_mention_no_secret(tmp_path: Path) -> None:
    from lms.demo import credentials
    from lms.settings import Settings

    text = credentials(Settings(data_dir=tmp_path))
    assert "/v1/me/wallet/apple" in text
    assert "PRIVATE KEY" not in text and "private_key" not in text
