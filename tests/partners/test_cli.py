"""``lms partners create|rotate-key|revoke`` as an operator runs them."""

from __future__ import annotations

import json

import httpx
import pytest

from lms.partners.key_gate import FRESH_FOR, GATE
from tests.factories import bearer
from tests.partners.support import unique_code
from tests.test_cli import lms


async def probe(client: httpx.AsyncClient, key: str) -> int:
    response = await client.get("/v1/partner/accruals/none", headers=bearer(key))
    return response.status_code


async def test_create_rotate_and_revoke(database_url: str, client: httpx.AsyncClient,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The command line is another process: the API's process sees its changes to a key once
    # its own check of the key is FRESH_FOR old (lms.partners.key_gate), which this clock
    # moves past after each change.
    clock = [0.0]
    monkeypatch.setattr(GATE, "clock", lambda: clock[0])
    code = unique_code("cli")
    created = lms(database_url, "partners", "create", "--code", code, "--name", "Cli Shop",
                  "--kind", "shop", "--currency", "EUR", "--scopes", "accrue,statements")
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout)
    assert first["partner"] == code and first["key"].startswith(f"lms_{first['prefix']}_")
    assert await probe(client, first["key"]) == 404

    rate = lms(database_url, "partners", "set-rate", code, "retail", "--miles-per-unit-bp",
               "15000", "--effective-from", "2026-01-01T00:00:00Z")
    assert rate.returncode == 0, rate.stderr
    assert json.loads(rate.stdout)["milesPerUnitBp"] == 15000
    naive = lms(database_url, "partners", "set-rate", code, "retail", "--miles-per-unit-bp",
                "1", "--effective-from", "2026-02-01T00:00:00")
    assert naive.returncode == 1 and "invalid_earn_rate" in naive.stderr

    again = lms(database_url, "partners", "create", "--code", code, "--name", "Cli Shop",
                "--kind", "shop")
    assert again.returncode == 1 and "partner_exists" in again.stderr
    bad = lms(database_url, "partners", "create", "--code", unique_code(), "--name", "X",
              "--kind", "shop", "--scopes", "accrue,fly")
    assert bad.returncode == 1 and "validation_error" in bad.stderr

    rotated = lms(database_url, "partners", "rotate-key", code, "--overlap-hours", "0")
    assert rotated.returncode == 0, rotated.stderr
    second = json.loads(rotated.stdout)
    assert second["scopes"] == ["accrue", "statements"]
    clock[0] += FRESH_FOR + 0.1
    assert await probe(client, first["key"]) == 401
    assert await probe(client, second["key"]) == 404

    revoked = lms(database_url, "partners", "revoke", second["prefix"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    clock[0] += FRESH_FOR + 0.1
    assert await probe(client, second["key"]) == 401
    missing = lms(database_url, "partners", "revoke", "ffffffff")
    assert missing.returncode == 1 and "api_key_not_found" in missing.stderr
