"""examples/partner_client.py runs its whole flow against the real app on a local port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from examples import partner_client
from lms.app import create_app
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.partners.support import issue_key
from tests.redemption.support import funded_member, miles_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn in a thread of its own, with its own database pool."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


async def test_example_client_runs_the_whole_flow(
        server: str, client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        shop: dict[str, Any], admin: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    member = await funded_member(client, db, system, 20_000)
    key = await issue_key(client, admin, shop["partner"]["code"], ["redeem", "statements"])
    code = await asyncio.to_thread(partner_client.main, [
        server, key, member["card"], "--email", member["member"]["email"],
        "--password", member["password"], "--order-amount", "10000"])
    assert code == 0
    out = capsys.readouterr().out
    for step in ("== quote", "== hold", "== partial capture", "== refund", "== second hold",
                 "== void", "== statement"):
        assert step in out
    # The statement, JSON then CSV: 2500 miles captured, 1250 refunded, at 1 cent a mile.
    assert '"redeemedMiles": 1250' in out and '"programmeOwes": 1250' in out
    assert "(CSV)\nrecord,month,status," in out
    assert ",open,EUR,,,redeemed,,,,1250,1250" in out
    # 10000 cents may take 10000 miles at 1 cent; the hold took half, the capture half of
    # that (2500), the refund half of the capture (1250).
    assert (await miles_of(client, member)) == {"posted": 20_000 - 1250, "held": 0,
                                                "available": 20_000 - 1250}
