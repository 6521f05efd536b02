"""The README's run command on the newcomer's path: ``./dev run`` with no database or broker
configured, so it uses the embedded PostgreSQL and the directory broker under a fresh data
directory. It must serve, sign the demo users in, relay events through the worker, and stop
everything (worker and embedded PostgreSQL included) on Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from lms.demo import MEMBER_PASSWORD, MEMBERS, STAFF, STAFF_PASSWORD
from lms.settings import PROJECT_ROOT

START_TIMEOUT = 150.0
STOP_TIMEOUT = 40.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def group_members(pgid: int) -> list[str]:
    """Live processes of a process group (zombies, already gone, are not counted)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            members.append(f"{stat.parent.name}: {cmdline.decode(errors='replace')}")
    return members


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return bool(group_members(pgid))


class DevRun:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.base = f"http://127.0.0.1:{port}"
        self.log = data_dir / "dev-run.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
        self.provider = f"http://127.0.0.1:{free_port()}"
        env |= {"LMS_DATA_DIR": str(data_dir), "LMS_PUBLIC_BASE_URL": self.base,
                "LMS_WORKER_CONCURRENCY": "1", "LMS_PAYMENT_PROVIDER_URL": self.provider}
        with self.log.open("wb") as out:
            # A session of its own stands for the terminal: Ctrl-C reaches the whole group.
            self.proc = subprocess.Popen([str(PROJECT_ROOT / "dev"), "run", "--port", str(port)],
                                         cwd=PROJECT_ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"./dev run exited with {self.proc.returncode}:\n{self.output()}")
            if ready():
                return
            time.sleep(0.25)
        pytest.fail(f"timed out waiting for {what}:\n{self.output()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        if group_alive(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if (self.data_dir / "pgdata" / "postmaster.pid").exists():
            env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
            subprocess.run([sys.executable, "-m", "lms.cli", "db", "stop-embedded"],
                           cwd=PROJECT_ROOT, check=False, timeout=60,
                           env=env | {"LMS_DATA_DIR": str(self.data_dir)})


@pytest.fixture
def dev_run() -> Iterator[DevRun]:
    # Not tmp_path: run as root, pgserver runs PostgreSQL as an unprivileged user, which
    # cannot reach into pytest's private (0700) temporary directory to stop the server.
    data_dir = Path(tempfile.mkdtemp(prefix="lms-dev-run-"))
    data_dir.chmod(0o755)
    run = DevRun(data_dir, free_port())
    try:
        yield run
    finally:
        run.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_dev_run_serves_the_demo_on_embedded_services_and_stops_cleanly(
        dev_run: DevRun) -> None:
    dev_run.wait_for("the API to answer /health", dev_run.healthy)
    base = dev_run.base

    ready = httpx.get(f"{base}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert httpx.get(f"{base}/schema/openapi.json", timeout=10).status_code == 200
    member = httpx.post(f"{base}/v1/auth/token", timeout=10,
                        json={"email": MEMBERS[0].email, "password": MEMBER_PASSWORD})
    assert member.status_code == 200, member.text
    balance = httpx.get(f"{base}/v1/me/balance", timeout=10,
                        headers={"Authorization": f"Bearer {member.json()['accessToken']}"})
    assert balance.status_code == 200, balance.text
    staff = httpx.post(f"{base}/v1/staff/auth/token", timeout=10,
                       json={"email": STAFF[0][0], "password": STAFF_PASSWORD})
    assert staff.status_code == 200, staff.text

    output = dev_run.output()
    assert f"{base}/schema" in output and MEMBERS[0].email in output
    # The demo partner's printed key credits the member through the partner API.
    key = re.search(r"lms_[0-9a-f]{8}_[A-Za-z0-9_-]+", output)
    assert key is not None, output
    member_token = {"Authorization": f"Bearer {member.json()['accessToken']}"}
    card = httpx.get(f"{base}/v1/me", headers=member_token, timeout=10).json()["cardNumber"]
    accrual = httpx.post(
        f"{base}/v1/partner/accruals", timeout=10,
        headers={"Authorization": f"Bearer {key.group(0)}", "Idempotency-Key": "demo-1"},
        json={"cardNumber": card, "partnerTxnId": "demo-1", "amount": 5000,
              "currency": "EUR", "category": "general",
              "occurredAt": datetime.now(UTC).isoformat()})
    assert accrual.status_code == 201, accrual.text
    # The fake payment provider runs beside them, its address printed; a purchase gets a
    # payment page there.
    assert f"fake payment provider at {dev_run.provider}" in output
    purchase = httpx.post(f"{base}/v1/me/mile-purchases", json={"miles": 1000}, timeout=10,
                          headers=member_token | {"Idempotency-Key": "demo-buy-1"})
    assert purchase.status_code == 201, purchase.text
    page = httpx.get(purchase.json()["paymentUrl"], timeout=10)
    assert page.status_code == 200 and "Pay" in page.text
    # The beat's relay goes through the directory broker to the worker's pool.
    dev_run.wait_for("the worker to relay the demo's events",
                     lambda: "outbox relay published" in dev_run.output())

    assert dev_run.interrupt() in (0, 130)
    assert group_members(dev_run.proc.pid) == [], "processes of ./dev run outlived Ctrl-C"
    assert not (dev_run.data_dir / "pgdata" / "postmaster.pid").exists(), dev_run.output()
