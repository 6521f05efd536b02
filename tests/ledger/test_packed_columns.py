"""Columns packed into one text parameter (lms.ledger.repository.packed) come back out of
string_to_array() as the values that went in."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from lms.db import Database, RawConnection
from lms.ledger.repository import packed


async def test_packed_columns_round_trip_through_postgresql(db: Database) -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    texts = ["LHR-JFK", "Flight LM1, row 2", '{"a": "b,c", "d": "\\u001f"}', "é ü"]
    ints = [1, -2, 9_000_000_000, 0]
    nullable = [None, 5, None, 7]
    moments = [at, at, datetime(2029, 12, 31, tzinfo=UTC), at]
    days = [date(2026, 1, 1), date(2026, 2, 28), date(2024, 2, 29), date(2026, 1, 1)]

    async def read(conn: RawConnection) -> list[tuple[object, ...]]:
        rows = await conn.fetch(
            "SELECT * FROM unnest(string_to_array($1, E'\\x1f'), "
            "string_to_array($2, E'\\x1f')::bigint[], "
            "string_to_array($3, E'\\x1f', '')::bigint[], "
            "string_to_array($4, E'\\x1f')::timestamptz[], "
            "string_to_array($5, E'\\x1f')::date[])",
            packed(texts), packed(ints), packed(nullable), packed(moments), packed(days))
        return [tuple(r) for r in rows]

    assert await db.raw_transaction(read) == list(
        zip(texts, ints, nullable, moments, days, strict=True))


def test_a_value_holding_the_separator_is_refused() -> None:
    assert packed([]) == ""
    assert packed(x for x in (1, 2)) == "1\x1f2"
    with pytest.raises(ValueError, match="separator"):
        packed(["a", "b\x1fc"])
