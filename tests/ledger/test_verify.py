"""``verify`` finds each of the six invariants (DESIGN §3) when it is broken on purpose, and
reports the ids involved. Every test breaks a freshly migrated database of its own, and checks
the exact set of violations: the broken invariant, and no false alarm on the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from lms.ledger.service import Ledger
from lms.ledger.types import EntryKind, SystemAccount, Unit
from tests.conftest import plain
from tests.factories import TEST_ACTOR, funded_account
from tests.ledger.support import LedgerHarness


@pytest.fixture
async def scratch(scratch_database_url: str) -> AsyncIterator[LedgerHarness]:
    harness = await LedgerHarness(scratch_database_url).start()
    yield harness
    await harness.close()


def tamper(url: str, *statements: str, replica: bool = False) -> None:
    """Run statements as the superuser; ``replica`` bypasses the append-only triggers."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        if replica:
            conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


async def system_entry(harness: LedgerHarness, url: str, kind: str = "adjustment",
                       **columns: Any) -> int:
    """Append a balanced entry between two system accounts by hand (balances kept in step),
    with extra journal columns: a duplicate that only the ledger's own checks would stop."""
    [s1, s2] = await harness.sql("SELECT id FROM accounts WHERE code = 'adjustments' "
                                 "ORDER BY shard")
    names = ", ".join(["kind", "actor_type", "effective_at", *columns])
    values = ", ".join([f"'{kind}'", "'system'", "now()",
                        *(f"'{v}'" for v in columns.values())])
    with psycopg.connect(plain(url), autocommit=True) as conn:
        row = conn.execute(f"INSERT INTO journal_entries ({names}) VALUES ({values}) "
                           f"RETURNING id").fetchone()
        assert row is not None
        for account, amount in ((s1["id"], 9), (s2["id"], -9)):
            conn.execute(f"UPDATE balances SET posted = posted + {amount} "
                         f"WHERE account_id = {account} AND unit = 'MILES'")
            conn.execute(f"INSERT INTO postings (entry_id, account_id, unit, amount, "
                         f"balance_after) VALUES ({row[0]}, {account}, 'MILES', {amount}, 0)")
    return int(row[0])


async def found(harness: LedgerHarness) -> set[tuple[int, tuple[tuple[str, Any], ...]]]:
    """The violations as (invariant number, row items), comparable as a set."""
    return {(v.invariant.number, tuple(v.row.items())) for v in await harness.violations()}


async def numbers(harness: LedgerHarness) -> set[int]:
    return {n for n, _ in await found(harness)}


async def some_activity(harness: LedgerHarness) -> dict[str, int]:
    """A small but varied ledger: credits, a transfer, a debit, a hold captured in part,
    a pending hold, a reversal and qualifying units."""

    async def scenario(ledger: Ledger) -> dict[str, int]:
        a = await funded_account(ledger, 1000)
        b = await funded_account(ledger, 200)
        t = await ledger.transfer(a, b, 300, actor=TEST_ACTOR)
        d = await ledger.debit(b, 50, kind=EntryKind.REDEMPTION, actor=TEST_ACTOR)
        await ledger.reverse(d.id, actor=TEST_ACTOR, reason="goodwill")
        soon = datetime.now(UTC) + timedelta(hours=1)
        h1 = await ledger.create_hold(a, 100, actor=TEST_ACTOR, expires_at=soon)
        await ledger.capture(h1.id, 60, actor=TEST_ACTOR)
        h2 = await ledger.create_hold(a, 40, actor=TEST_ACTOR, expires_at=soon)
        await ledger.credit(a, 5, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            unit=Unit.STATUS_MILES, from_system=SystemAccount.QUALIFICATION)
        return {"a": a, "b": b, "transfer": t.id, "debit": d.id, "captured": h1.id,
                "pending": h2.id}

    return await harness.run(scenario)


async def test_a_sound_ledger_has_no_violation(scratch: LedgerHarness) -> None:
    await some_activity(scratch)
    assert await found(scratch) == set()


# -- (1) every entry sums to zero per unit ---------------------------------------------------

async def test_1_an_appended_unbalanced_posting(scratch: LedgerHarness,
                                                scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    # Inserting is what the triggers allow, so no need to bypass them.
    tamper(scratch_database_url,
           f"INSERT INTO postings (entry_id, account_id, unit, amount, balance_after) "
           f"VALUES ({ids['transfer']}, {ids['b']}, 'MILES', 7, 0)")
    violations = await found(scratch)
    assert (1, (("entry_id", ids["transfer"]), ("unit", "MILES"), ("total", 7))) in violations
    assert {n for n, _ in violations} == {1, 2}  # b's balance row disagrees too


async def test_1_an_edited_posting(scratch: LedgerHarness, scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    tamper(scratch_database_url,
           f"UPDATE postings SET amount = amount - 1 WHERE entry_id = {ids['debit']} "
           f"AND account_id = {ids['b']}", replica=True)
    violations = await found(scratch)
    assert (1, (("entry_id", ids["debit"]), ("unit", "MILES"), ("total", -1))) in violations
    assert [n for n, _ in violations if n == 1] == [1]


async def test_1_an_entry_without_postings(scratch: LedgerHarness,
                                           scratch_database_url: str) -> None:
    await some_activity(scratch)
    with psycopg.connect(plain(scratch_database_url), autocommit=True) as conn:
        row = conn.execute("INSERT INTO journal_entries (kind, actor_type, effective_at) "
                           "VALUES ('adjustment', 'system', now()) RETURNING id").fetchone()
    assert row is not None
    assert await found(scratch) == {(1, (("entry_id", row[0]), ("unit", None),
                                         ("total", None)))}


async def test_1_postings_of_no_entry(scratch: LedgerHarness,
                                      scratch_database_url: str) -> None:
    """Postings carry no foreign key (the hot path skips the lookup): verify checks it."""
    await some_activity(scratch)
    [s1, s2] = await scratch.sql("SELECT id FROM accounts WHERE code = 'fees' ORDER BY shard")
    tamper(scratch_database_url, *[
        stmt for account, amount in ((s1["id"], 5), (s2["id"], -5)) for stmt in (
            f"INSERT INTO postings (entry_id, account_id, unit, amount, balance_after) "
            f"VALUES (987654321, {account}, 'MILES', {amount}, 0)",
            f"UPDATE balances SET posted = posted + {amount} WHERE account_id = {account} "
            f"AND unit = 'MILES'")])
    assert await found(scratch) == {
        (1, (("entry_id", 987654321), ("unit", "MILES"), ("total", 5))),
        (1, (("entry_id", 987654321), ("unit", "MILES"), ("total", -5)))}


# -- (2) every balance row equals the sum of its postings -------------------------------------

async def test_2_a_posted_balance_off_by_one(scratch: LedgerHarness,
                                             scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    tamper(scratch_database_url, f"UPDATE balances SET posted = posted + 1 "
                                 f"WHERE account_id = {ids['a']} AND unit = 'STATUS_MILES'")
    assert await found(scratch) == {(2, (("account_id", ids["a"]), ("unit", "STATUS_MILES"),
                                         ("posted", 6), ("postings_total", 5)))}


async def test_2_held_disagrees_with_pending_holds(scratch: LedgerHarness,
                                                   scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    tamper(scratch_database_url,
           f"UPDATE balances SET held = held + 3 WHERE account_id = {ids['a']} "
           f"AND unit = 'MILES'")
    assert await found(scratch) == {(2, (("account_id", ids["a"]), ("unit", "MILES"),
                                         ("posted", 43), ("postings_total", 40)))}


async def test_2_a_hold_closed_without_releasing(scratch: LedgerHarness,
                                                 scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    tamper(scratch_database_url,
           f"UPDATE holds SET status = 'voided' WHERE id = {ids['pending']}")
    assert await found(scratch) == {(2, (("account_id", ids["a"]), ("unit", "MILES"),
                                         ("posted", 40), ("postings_total", 0)))}


async def test_2_postings_without_a_balance_row(scratch: LedgerHarness,
                                                scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    tamper(scratch_database_url,
           f"DELETE FROM balances WHERE account_id = {ids['a']} AND unit = 'STATUS_MILES'")
    assert await found(scratch) == {(2, (("account_id", ids["a"]), ("unit", "STATUS_MILES"),
                                         ("posted", None), ("postings_total", 5)))}


# -- (3) no member or pool account has a negative available balance --------------------------

async def test_3_negative_available(scratch: LedgerHarness, scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    [row] = await scratch.sql("SELECT posted, held FROM balances "
                              "WHERE account_id = $1 AND unit = 'MILES'", ids["b"])
    over = row["posted"] + 25
    # A pending hold keeps invariant 2 satisfied; no clawback explains the shortfall.
    tamper(scratch_database_url,
           f"INSERT INTO holds (account_id, amount, actor_type, expires_at) "
           f"VALUES ({ids['b']}, {over}, 'system', now() + interval '1 day')",
           f"UPDATE balances SET held = held + {over} WHERE account_id = {ids['b']} "
           f"AND unit = 'MILES'")
    assert await found(scratch) == {(3, (("account_id", ids["b"]), ("unit", "MILES"),
                                         ("posted", row["posted"]), ("held", over)))}


async def test_3_negative_posted_from_a_journal_entry(scratch: LedgerHarness,
                                                      scratch_database_url: str) -> None:
    """A member account driven below zero by a balanced entry that is not a clawback."""
    async def overdraw(ledger: Ledger) -> int:
        a = await funded_account(ledger)
        await ledger.credit(a, 10, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            unit=Unit.SEGMENTS, from_system=SystemAccount.QUALIFICATION)
        return a

    a = await scratch.run(overdraw)
    [system] = await scratch.sql("SELECT id FROM accounts WHERE code = 'adjustments' "
                                 "ORDER BY shard LIMIT 1")
    with psycopg.connect(plain(scratch_database_url), autocommit=True) as conn:
        row = conn.execute("INSERT INTO journal_entries (kind, actor_type, effective_at) "
                           "VALUES ('adjustment', 'system', now()) RETURNING id").fetchone()
        assert row is not None
        conn.execute(f"INSERT INTO postings (entry_id, account_id, unit, amount, balance_after) "
                     f"VALUES ({row[0]}, {a}, 'SEGMENTS', -30, -20), "
                     f"({row[0]}, {system['id']}, 'SEGMENTS', 30, 30)")
        conn.execute(f"UPDATE balances SET posted = posted - 30 WHERE account_id = {a} "
                     f"AND unit = 'SEGMENTS'")
        conn.execute(f"UPDATE balances SET posted = posted + 30 WHERE account_id = "
                     f"{system['id']} AND unit = 'SEGMENTS'")
    assert await found(scratch) == {(3, (("account_id", a), ("unit", "SEGMENTS"),
                                         ("posted", -20), ("held", 0)))}


# -- (4) open lots sum to the account's MILES balance ----------------------------------------

async def test_4_a_lot_consumed_outside_the_ledger(scratch: LedgerHarness,
                                                   scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    [lot] = await scratch.sql("SELECT id FROM lots WHERE account_id = $1 AND remaining > 0 "
                              "ORDER BY id LIMIT 1", ids["b"])
    [bal] = await scratch.sql("SELECT posted FROM balances WHERE account_id = $1 "
                              "AND unit = 'MILES'", ids["b"])
    tamper(scratch_database_url, f"UPDATE lots SET remaining = remaining - 1 "
                                 f"WHERE id = {lot['id']}")
    assert await found(scratch) == {(4, (("account_id", ids["b"]), ("posted", bal["posted"]),
                                         ("open_lots", bal["posted"] - 1)))}


async def test_4_a_credit_without_its_lot(scratch: LedgerHarness,
                                          scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    [bal] = await scratch.sql("SELECT posted FROM balances WHERE account_id = $1 "
                              "AND unit = 'MILES'", ids["a"])
    tamper(scratch_database_url, f"DELETE FROM lots WHERE account_id = {ids['a']}")
    assert await found(scratch) == {(4, (("account_id", ids["a"]), ("posted", bal["posted"]),
                                         ("open_lots", 0)))}


async def test_4_a_lot_on_a_system_account(scratch: LedgerHarness,
                                           scratch_database_url: str) -> None:
    await some_activity(scratch)
    [system] = await scratch.sql("SELECT id FROM accounts WHERE code = 'issuance' "
                                 "ORDER BY shard LIMIT 1")
    [entry] = await scratch.sql("SELECT max(id) AS id FROM journal_entries")
    tamper(scratch_database_url,
           f"INSERT INTO lots (account_id, entry_id, amount, remaining, expires_at) "
           f"VALUES ({system['id']}, {entry['id']}, 8, 8, now())")
    assert await found(scratch) == {(4, (("account_id", system["id"]), ("posted", None),
                                         ("open_lots", 8)))}


# -- (5) no external reference or idempotency key applied twice ------------------------------

async def test_5_external_reference_applied_twice(scratch: LedgerHarness,
                                                  scratch_database_url: str) -> None:
    await some_activity(scratch)

    async def once(ledger: Ledger) -> None:
        a = await funded_account(ledger)
        await ledger.credit(a, 100, kind=EntryKind.ACCRUAL, actor=TEST_ACTOR,
                            source="partner:7", external_ref="TKT-1/C1")

    await scratch.run(once)
    tamper(scratch_database_url, "DROP INDEX uq_journal_entries_source_ref")
    await system_entry(scratch, scratch_database_url, source="partner:7",
                       external_ref="TKT-1/C1")
    assert await found(scratch) == {(5, (("what", "external_ref"),
                                         ("ref", "partner:7:TKT-1/C1"), ("times", 2)))}


async def test_5_entry_reversed_twice(scratch: LedgerHarness,
                                      scratch_database_url: str) -> None:
    ids = await some_activity(scratch)  # the debit is reversed once already
    tamper(scratch_database_url, "DROP INDEX uq_journal_entries_reverses_id")
    await system_entry(scratch, scratch_database_url, reverses_id=ids["debit"])
    assert await found(scratch) == {(5, (("what", "reversal"), ("ref", str(ids["debit"])),
                                         ("times", 2)))}


async def test_5_hold_captured_twice(scratch: LedgerHarness,
                                     scratch_database_url: str) -> None:
    ids = await some_activity(scratch)
    await system_entry(scratch, scratch_database_url, kind="capture",
                       hold_id=ids["captured"])
    assert await found(scratch) == {(5, (("what", "captured_hold"),
                                         ("ref", str(ids["captured"])), ("times", 2)))}


async def test_5_idempotency_key_stored_twice(scratch: LedgerHarness,
                                              scratch_database_url: str) -> None:
    await some_activity(scratch)
    tamper(scratch_database_url,
           "ALTER TABLE idempotency_keys DROP CONSTRAINT pk_idempotency_keys",
           *["INSERT INTO idempotency_keys (principal, key, request_hash) "
             "VALUES ('member:42', 'k-1', 'h')"] * 2)
    assert await found(scratch) == {(5, (("what", "idempotency_key"),
                                         ("ref", "member:42:k-1"), ("times", 2)))}


# -- (6) journal rows are never updated or deleted (enforced in the database) ----------------

@pytest.mark.parametrize(("statements", "expected"), [
    (["ALTER TABLE journal_entries DISABLE TRIGGER journal_entries_append_only"],
     {("journal_entries", "DELETE"), ("journal_entries", "UPDATE")}),
    (["DROP TRIGGER postings_no_truncate ON postings"], {("postings", "TRUNCATE")}),
    (["ALTER TABLE audit_log DISABLE TRIGGER USER"],
     {("audit_log", "DELETE"), ("audit_log", "TRUNCATE"), ("audit_log", "UPDATE")}),
    # A trigger that fires only for replication sessions protects nothing in normal use.
    (["ALTER TABLE postings ENABLE REPLICA TRIGGER postings_append_only"],
     {("postings", "DELETE"), ("postings", "UPDATE")}),
    # An AFTER row trigger would still abort the statement, but a BEFORE trigger is what the
    # check asks for (and the only kind a TRUNCATE guard can be): reported.
    (["DROP TRIGGER journal_entries_append_only ON journal_entries",
      "CREATE TRIGGER journal_entries_after AFTER UPDATE ON journal_entries "
      "FOR EACH ROW EXECUTE FUNCTION reject_journal_change()"],
     {("journal_entries", "DELETE"), ("journal_entries", "UPDATE")}),
])
async def test_6_unprotected_journal_tables(scratch: LedgerHarness, scratch_database_url: str,
                                            statements: list[str],
                                            expected: set[tuple[str, str]]) -> None:
    await some_activity(scratch)
    tamper(scratch_database_url, *statements)
    assert await found(scratch) == {(6, (("table", t), ("unprotected", e))) for t, e in expected}


async def test_6_triggers_disabled_then_restored_is_not_reported(
        scratch: LedgerHarness, scratch_database_url: str) -> None:
    """The check is structural: it sees the protection as it is now. An edit made while the
    triggers were off shows up only through the other invariants (here: 1)."""
    ids = await some_activity(scratch)
    tamper(scratch_database_url,
           "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
           f"UPDATE postings SET amount = amount + 1 WHERE entry_id = {ids['debit']} "
           f"AND amount < 0",
           "ALTER TABLE postings ENABLE TRIGGER postings_append_only")
    assert 6 not in await numbers(scratch)
    assert 1 in await numbers(scratch)
