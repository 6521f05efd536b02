"""``lms ledger verify`` checks closed statements; ``lms partners close-statements`` refuses
a month that is not over. Subprocesses against a database of their own."""

from __future__ import annotations

import json

from tests.test_cli import lms, ok, sql


def test_verify_reports_a_snapshot_that_disagrees_with_the_ledger(
        scratch_database_url: str) -> None:
    url = scratch_database_url
    ok(lms(url, "db", "upgrade"))
    ok(lms(url, "partners", "create", "--code", "tampered-shop", "--name", "Tampered",
           "--kind", "shop", "--price-per-mile-milli-minor", "1000",
           "--scopes", "statements"))
    assert lms(url, "ledger", "verify").returncode == 0

    # The snapshot tables refuse UPDATE and DELETE, but an insert is possible to whoever
    # holds the database: a statement for a month in which the ledger has nothing.
    partner_id, clearing = sql(url, "SELECT id, clearing_account_id FROM partners "
                                    "WHERE code = 'tampered-shop'")[0]
    [(statement_id,)] = sql(url, f"""
        INSERT INTO partner_statements (partner_id, month, clearing_account_id, currency,
            price_per_mile_milli_minor, value_per_mile_milli_minor, issued_miles,
            partner_owes, redeemed_miles, programme_owes, line_count)
        VALUES ({partner_id}, '2026-10-01', {clearing}, 'EUR', 1000, 0, 500, 500, 0, 0, 1)
        RETURNING id""")
    sql(url, f"INSERT INTO partner_statement_totals VALUES ({statement_id}, 'accrual', -500, 1)")
    broken = lms(url, "ledger", "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "invariant 7" in broken.stdout and "month=2026-10" in broken.stdout
    assert "statement_miles=-500" in broken.stdout and "ledger_miles=None" in broken.stdout
    assert "invariant 8" in broken.stdout and "what=lines of accrual" in broken.stdout
    assert "[FAIL] 7." in broken.stderr and "[  ok] 9." in broken.stderr

    sql(url, "ALTER TABLE partner_statement_lines DISABLE TRIGGER "
             "partner_statement_lines_append_only")
    unprotected = lms(url, "ledger", "verify")
    assert "invariant 9" in unprotected.stdout and "[FAIL] 9." in unprotected.stderr


def test_close_statements_refuses_a_month_not_over(scratch_database_url: str) -> None:
    url = scratch_database_url
    ok(lms(url, "db", "upgrade"))
    refused = lms(url, "partners", "close-statements", "--month", "2099-01")
    assert refused.returncode == 1 and "month_not_over" in refused.stderr
    malformed = lms(url, "partners", "close-statements", "--month", "2099-1")
    assert malformed.returncode == 1 and "invalid_month" in malformed.stderr
    out = ok(lms(url, "partners", "close-statements"))
    assert [json.loads(line) for line in out.splitlines()] == []
