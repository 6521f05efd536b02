"""The journal is append-only in the database itself: UPDATE, DELETE and TRUNCATE on
journal_entries, postings and audit_log fail for any client, even a superuser, and change
nothing. Runs on a database of its own, so that a missing trigger cannot wipe the shared one."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from lms.ledger.models import APPEND_ONLY_TABLES
from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind
from tests.conftest import drop_database, migrated_database, plain
from tests.factories import TEST_ACTOR, funded_account
from tests.ledger.support import LedgerHarness

STATEMENTS = {
    "journal_entries": [
        "UPDATE journal_entries SET description = 'tampered'",
        "UPDATE journal_entries SET id = id",  # even a no-op update is refused
        "DELETE FROM journal_entries WHERE id = (SELECT max(id) FROM journal_entries)",
        "DELETE FROM journal_entries",
        "TRUNCATE journal_entries CASCADE",
    ],
    "postings": [
        "UPDATE postings SET amount = amount * 2",
        "UPDATE postings SET balance_after = 0 WHERE id = (SELECT min(id) FROM postings)",
        "DELETE FROM postings",
        "TRUNCATE postings",
        "TRUNCATE postings, journal_entries CASCADE",
    ],
    "audit_log": [
        "UPDATE audit_log SET action = 'nothing'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
}
CASES = [(table, sql) for table, sqls in STATEMENTS.items() for sql in sqls]
SNAPSHOT = {
    "journal_entries": "SELECT * FROM journal_entries ORDER BY id",
    "postings": "SELECT * FROM postings ORDER BY id",
    "audit_log": "SELECT * FROM audit_log ORDER BY id",
}


@pytest.fixture(scope="module")
def journal_url() -> Iterator[str]:
    url = migrated_database(f"lms_test_{os.getpid()}_append_only")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
async def journal(journal_url: str) -> AsyncIterator[LedgerHarness]:
    harness = await LedgerHarness(journal_url).start()

    async def scenario(ledger: Ledger) -> None:
        a = await funded_account(ledger, 1000)
        b = await funded_account(ledger, 10)
        await ledger.transfer(a, b, 300, actor=TEST_ACTOR)
        entry = await ledger.debit(b, 50, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        await ledger.reverse(entry.id, actor=TEST_ACTOR, reason="test")

    await harness.run(scenario)
    with psycopg.connect(plain(journal_url), autocommit=True) as conn:
        conn.execute("INSERT INTO audit_log (actor_type, actor_id, action, target_type, "
                     "target_id) VALUES ('agent', '7', 'miles.adjusted', 'account', '1')")
    yield harness
    assert await harness.violations() == []
    await harness.close()


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(plain(url)) as conn:
        return {t: conn.execute(q).fetchall() for t, q in SNAPSHOT.items()}


def test_there_is_something_to_protect(journal: LedgerHarness, journal_url: str) -> None:
    rows = snapshot(journal_url)
    assert len(rows["journal_entries"]) == 5
    assert len(rows["postings"]) == 10
    assert len(rows["audit_log"]) >= 1


@pytest.mark.parametrize(("table", "statement"), CASES)
def test_psycopg_superuser_is_refused(journal: LedgerHarness, journal_url: str, table: str,
                                      statement: str) -> None:
    before = snapshot(journal_url)
    with psycopg.connect(plain(journal_url), autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match=f"on {table} is not allowed: the table is append-only"):
            conn.execute(statement)
    assert snapshot(journal_url) == before


@pytest.mark.parametrize(("table", "statement"), CASES)
async def test_asyncpg_is_refused(journal: LedgerHarness, journal_url: str, table: str,
                                  statement: str) -> None:
    before = snapshot(journal_url)
    conn = await asyncpg.connect(plain(journal_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError,
                           match=f"on {table} is not allowed: the table is append-only"):
            await conn.execute(statement)
        # inside an explicit transaction too, the statement fails and nothing commits
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute(statement)
    finally:
        await conn.close()
    assert snapshot(journal_url) == before


def test_every_append_only_table_is_covered() -> None:
    assert set(STATEMENTS) == set(APPEND_ONLY_TABLES)
    for table in APPEND_ONLY_TABLES:
        verbs = {sql.split()[0] for sql in STATEMENTS[table]}
        assert verbs == {"UPDATE", "DELETE", "TRUNCATE"}


def test_inserts_are_still_allowed(journal: LedgerHarness, journal_url: str) -> None:
    """The triggers refuse changes, not appends (the audit log keeps growing)."""
    with psycopg.connect(plain(journal_url), autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        conn.execute("INSERT INTO audit_log (actor_type, action) VALUES ('system', 'probe')")
        after = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert before is not None and after == (before[0] + 1,)
