"""``lms ledger verify`` finds rows of the money path that name rows that do not exist (the
foreign keys migration 0021 dropped). A subprocess against a database of its own."""

from __future__ import annotations

from tests.test_cli import lms, ok, sql


def test_verify_reports_a_row_that_names_a_missing_member(scratch_database_url: str) -> None:
    url = scratch_database_url
    ok(lms(url, "db", "upgrade"))
    clean = lms(url, "ledger", "verify")
    assert clean.returncode == 0 and "[  ok] 10." in clean.stderr

    # Nothing in the database stops this row since 0021; only its one write path does.
    sql(url, "INSERT INTO redemption_codes (member_id, code_hash, expires_at) "
             "VALUES (987654321, 'x', now() + interval '1 hour') RETURNING id")
    broken = lms(url, "ledger", "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "invariant 10" in broken.stdout
    assert "reference=redemption_codes.member_id, missing_id=987654321, rows=1" in broken.stdout
    assert "[FAIL] 10." in broken.stderr and "[  ok] 1." in broken.stderr
