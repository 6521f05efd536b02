"""``lms import flights``: streaming a CSV, resuming after an interruption without double
credit."""

from __future__ import annotations

import csv
import gc
from dataclasses import asdict
from datetime import date
from pathlib import Path

import pytest

from lms.accrual.earning import Coupon
from lms.accrual.errors import ImportFileInvalid
from lms.accrual.importer import (
    BULK_GC_THRESHOLD,
    COLUMNS,
    Invalid,
    card_of,
    checkpoint_path,
    fewer_collections,
    header_index,
    import_flights,
    lane_batches,
    row_parser,
)
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.ledger.types import Unit
from tests.accrual.support import Flyer, balances, coupon, distance_carrier, make_member

LHR_JFK = 3442


class Interrupted(Exception):
    pass


def write_feed(path: Path, members: list[Flyer], carrier: str, n: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(n):
            c = asdict(coupon(members[i % len(members)], carrier))
            row = ["" if c[k] is None else c[k] for k in COLUMNS]
            writer.writerow(row)
        writer.writerow(["bad", "x", "1", "not-a-date", "", "", "", "", "", ""])


@pytest.mark.parametrize(("window_batches", "stop_after"), [(1, 3), (2, 1)])
async def test_import_resumes_after_an_interruption_without_double_credit(
        db: Database, system: SystemAccounts, tmp_path: Path, window_batches: int,
        stop_after: int) -> None:
    carrier = await distance_carrier(db)
    members = [await make_member(db, system) for _ in range(3)]
    feed = tmp_path / "flown.csv"
    write_feed(feed, members, carrier, 60)

    def stop(windows: int) -> None:
        if windows == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        await import_flights(db, system, feed, batch_size=7, concurrency=2,
                             window_batches=window_batches, progress=None, after_batch=stop,
                             reevaluate_tiers=False)
    committed = int(checkpoint_path(feed).read_text().split('"rows": ')[1].split(",")[0])
    assert committed >= 14  # at least the first two windows of one batch a lane, in order
    assert committed % (7 * 2 * window_batches) == 0  # only whole windows count

    resumed = await import_flights(db, system, feed, batch_size=7, concurrency=2,
                                   window_batches=window_batches, progress=None,
                                   reevaluate_tiers=False)
    assert resumed.skipped == committed
    assert resumed.rows == 61 - committed
    assert resumed.rejected == {"invalid_coupon": 1}
    # Batches committed after the checkpoint was written come back as duplicates.
    assert resumed.credited + resumed.duplicates == 60 - committed
    total = sum([(await balances(db, system, m.account_id))[Unit.SEGMENTS] for m in members])
    assert total == 60
    for m in members:
        assert (await balances(db, system, m.account_id))[Unit.MILES] == 20 * LHR_JFK

    again = await import_flights(db, system, feed, batch_size=7, concurrency=3, progress=None,
                                 resume=False)
    assert (again.credited, again.duplicates, again.rows) == (0, 60, 61)
    assert "duplicate" in again.summary() and "rows/s" in again.summary()


async def test_a_file_without_the_columns_is_refused(
        db: Database, system: SystemAccounts, tmp_path: Path) -> None:
    feed = tmp_path / "wrong.csv"
    feed.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ImportFileInvalid):
        await import_flights(db, system, feed, progress=None)


def test_rows_are_read_by_the_header_whatever_its_order_spelling_or_missing_columns() -> None:
    # camelCase names, another order, no cabin/booking date columns, padded cells.
    header = ["cardNumber", "ticketNumber", "couponNumber", "flightDate", "marketingCarrier",
              "operatingCarrier", "flightNumber", "origin", "destination", "bookingClass",
              "fareAmount", "fareCurrency"]
    parse = row_parser(header_index(header))
    parsed = parse(["7001 ", " 1250000000001", "2", "2026-03-04", "lm", "pa", "12", "lhr",
                    "jfk", "j", "12050", "usd"])
    assert parsed == Coupon("1250000000001", 2, "7001", date(2026, 3, 4), "LM", "PA", "12",
                            "LHR", "JFK", "J", None, None, 12050, "USD")
    # A row shorter than the header: the missing cells are empty, not an IndexError.
    short = parse(["7001", "1250000000001", "2", "2026-03-04", "LM"])
    assert isinstance(short, Coupon) and (short.origin, short.fare_amount) == ("", None)
    # A cell that is not what its column holds: the row is rejected, with the reason.
    bad = parse(["7001", "1250000000001", "two", "2026-03-04", "LM", "LM", "1", "LHR", "JFK",
                 "J", "", ""])
    assert isinstance(bad, Invalid) and bad.coupon.ticket_number == "1250000000001"
    assert "not a coupon" in bad.detail
    full = row_parser(header_index(list(COLUMNS)))
    assert full(["1250000000001", "1", "7001", "2026-03-04", "LM", "LM", "1", "LHR", "JFK",
                 "J", "business", "2026-01-02", "", ""]) == Coupon(
        "1250000000001", 1, "7001", date(2026, 3, 4), "LM", "LM", "1", "LHR", "JFK", "J",
        "business", date(2026, 1, 2), None, None)


def test_a_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    threshold = gc.get_threshold()
    with pytest.raises(Interrupted), fewer_collections():
        assert gc.get_threshold()[0] == BULK_GC_THRESHOLD and gc.get_freeze_count() > 0
        raise Interrupted
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0


def test_a_window_goes_to_its_lanes_in_card_order_a_members_coupons_in_file_order() -> None:
    """lane_batches: every row once; a card always in the same lane; each lane's batches,
    one after the other, are its rows sorted by card with a member's in file order; the
    lanes take turns."""
    cards = ["7009", "7001", "7005", "7001", "7003", "7009", "7002", "7001", "7008", "7004"]
    rows: list[Coupon | Invalid] = [
        Coupon(f"12500000000{i:02d}", 1, card, date(2026, 3, 1), "LM", "LM", "1", "LHR",
               "JFK", "J") for i, card in enumerate(cards)]
    rows.append(Invalid(Coupon("?", 0, "", date.min, "", "", "", "", "", ""), "bad row"))
    parts = lane_batches(rows, 2, 2)
    assert sorted(id(r) for _, part in parts for r in part) == sorted(id(r) for r in rows)
    assert all(len(part) <= 2 for _, part in parts)
    lane_of: dict[str, int] = {}
    for lane, part in parts:
        for r in part:
            assert lane_of.setdefault(card_of(r), lane) == lane
    for lane in {lane for lane, _ in parts}:
        credited = [r for n, part in parts if n == lane for r in part]
        assert credited == sorted((r for r in rows if lane_of[card_of(r)] == lane),
                                  key=card_of)  # stable: a member's rows in file order
    turns = [lane for lane, _ in parts]
    assert turns[:2] in ([0, 1], [1, 0])  # both lanes get work at once
