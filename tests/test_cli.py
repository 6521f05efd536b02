"""The ``lms`` command as an operator runs it: a subprocess against a database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg
from litestar.testing import TestClient

from lms.app import create_app
from lms.cli import uvicorn_options
from lms.demo import MEMBER_PASSWORD, MEMBERS, STAFF, STAFF_PASSWORD
from lms.settings import PROJECT_ROOT, Settings
from tests.conftest import plain

SNAPSHOT_TABLES = ("accounts", "balances", "journal_entries", "postings", "lots", "holds",
                   "members", "staff_users", "access_tokens", "outbox_events")


def lms(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env |= {"LMS_DATABASE_URL": url, "LMS_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "lms.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def snapshot(url: str) -> dict[str, tuple[Any, ...]]:
    return {t: sql(url, f"SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) "
                        f"FROM {t} x")[0] for t in SNAPSHOT_TABLES}


def test_ledger_verify_exit_code_follows_the_invariants(scratch_database_url: str) -> None:
    url = scratch_database_url
    ok(lms(url, "db", "upgrade"))
    clean = lms(url, "ledger", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout == ""

    sql(url, "UPDATE balances SET posted = posted + 1 "
             "WHERE (account_id, unit) = (SELECT account_id, unit FROM balances "
             "ORDER BY 1, 2 LIMIT 1)")
    broken = lms(url, "ledger", "verify")
    assert broken.returncode == 1
    assert "invariant 2 (every balance row equals the sum of its postings)" in broken.stdout
    assert "[FAIL] 2." in broken.stderr

    sql(url, "UPDATE balances SET posted = posted - 1 "
             "WHERE (account_id, unit) = (SELECT account_id, unit FROM balances "
             "ORDER BY 1, 2 LIMIT 1)")
    sql(url, "ALTER TABLE postings DISABLE TRIGGER postings_append_only")
    unprotected = lms(url, "ledger", "verify")
    assert unprotected.returncode == 1
    assert "invariant 6" in unprotected.stdout and "postings" in unprotected.stdout
    assert "[FAIL] 2." not in unprotected.stderr


def test_demo_load_twice_changes_nothing_and_its_users_sign_in(
        scratch_database_url: str) -> None:
    url = scratch_database_url
    ok(lms(url, "db", "upgrade"))
    first = ok(lms(url, "demo", "load"))
    assert "Partner 'demo-shop'" in first and "lms_" in first
    assert MEMBER_PASSWORD in first and STAFF_PASSWORD in first
    after_first = snapshot(url)
    assert after_first["members"][0] == len(MEMBERS)
    assert after_first["holds"][0] == 1

    second = ok(lms(url, "demo", "load"))
    assert "0 items created" in second
    assert snapshot(url) == after_first

    ok(lms(url, "ledger", "verify"))
    ok(lms(url, "staff", "create", "--email", "Ops@Example.com", "--name", "Ops",
           "--role", "supervisor", "--password", "a long staff password"))
    again = lms(url, "staff", "create", "--email", "ops@example.com", "--name", "Ops",
                "--role", "agent", "--password", "another long password")
    assert again.returncode == 1 and "staff_exists" in again.stderr
    assert "Traceback" not in again.stderr

    with TestClient(app=create_app(Settings(database_url=url, log_level="WARNING"))) as client:
        for path, email, password in [
            ("/v1/auth/token", MEMBERS[0].email, MEMBER_PASSWORD),
            ("/v1/staff/auth/token", STAFF[0][0], STAFF_PASSWORD),
            ("/v1/staff/auth/token", "ops@example.com", "a long staff password"),
        ]:
            response = client.post(path, json={"email": email, "password": password})
            assert response.status_code == 200, (email, response.text)
            assert response.json()["accessToken"]
        wrong = client.post("/v1/staff/auth/token",
                            json={"email": "ops@example.com", "password": "not it at all"})
        assert wrong.status_code == 401


def test_serve_switches_uvicorns_access_log_off_above_info() -> None:
    """At WARNING the access lines would be dropped anyway, after uvicorn formatted their
    arguments on every request."""
    assert uvicorn_options("WARNING")["access_log"] is False
    assert uvicorn_options("ERROR")["access_log"] is False
    assert uvicorn_options("INFO")["access_log"] is True
    assert uvicorn_options("DEBUG") == {"log_level": "debug", "access_log": True,
                                        "proxy_headers": True}
