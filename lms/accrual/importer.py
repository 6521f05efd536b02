"""``lms import flights FILE.csv``: stream a file of flown coupons through ``credit_coupons``.

The file is read row by row (never whole) in windows of ``batch_size`` x ``concurrency`` x
``window_batches`` rows; each window is split by member over ``concurrency`` lanes, one
transaction at a time each, so that concurrent batches never share a member's balance rows and
really do run side by side, and each lane's rows are credited in card-number order, in batches
of ``batch_size``. Resuming is safe by construction: a coupon's external reference makes a
second credit impossible, so a rerun answers already-credited coupons as duplicates. To avoid
even re-reading those, a side file ``FILE.csv.lms-import`` keeps the number of rows known
committed (every window up to it has committed); a rerun skips them.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import os
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import IO

from lms.accrual.earning import Coupon, Reason, coupon_of
from lms.accrual.errors import ImportFileInvalid
from lms.accrual.service import Outcome, credit_coupons
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.tiers.jobs import tiers_nightly

COLUMNS = ("ticket_number", "coupon_number", "card_number", "flight_date", "marketing_carrier",
           "operating_carrier", "flight_number", "origin", "destination", "booking_class",
           "cabin", "booking_date", "fare_amount", "fare_currency")
REQUIRED = COLUMNS[:10]
CHECKPOINT_SUFFIX = ".lms-import"


@dataclass
class ImportReport:
    rows: int = 0
    skipped: int = 0  # rows before the checkpoint, not read again
    credited: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    miles: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    tier_changes: int | None = None  # members whose tier the closing pass changed
    tier_seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "credited":
            self.credited += 1
            self.miles += outcome.miles
        elif outcome.status == "duplicate":
            self.duplicates += 1
        else:
            self.rejected[str(outcome.reason)] += 1

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"rows read      {self.rows:>12,}" + (f"  ({self.skipped:,} skipped: committed "
                                                   "by an earlier run)" if self.skipped else ""),
            f"credited       {self.credited:>12,}  ({self.miles:,} miles)",
            f"duplicate      {self.duplicates:>12,}",
            f"rejected       {sum(self.rejected.values()):>12,}",
            *(f"  {reason:<24}{n:>10,}" for reason, n in self.rejected.most_common()),
            f"time           {self.seconds:>12.1f} s",
            f"rate           {self.rate:>12,.0f} rows/s",
        ]
        if self.tier_changes is not None:
            lines.append(f"tiers          {self.tier_changes:>12,}  members changed "
                         f"({self.tier_seconds:.1f} s)")
        if self.interrupted:
            lines.append("INTERRUPTED: run the same command again to resume")
        return "\n".join(lines)


class Invalid:
    """A row that is not a coupon at all (bad date, missing field): rejected without a
    database round trip."""

    __slots__ = ("coupon", "detail")

    def __init__(self, coupon: Coupon, detail: str) -> None:
        self.coupon, self.detail = coupon, detail


def row_parser(index: dict[str, int]) -> Callable[[list[str]], Coupon | Invalid]:
    """A parser of the file's rows for this header (``header_index``).

    The hot loop of a file of millions of rows: the columns' positions are resolved once,
    and a row that has them all is picked apart by one ``itemgetter`` call.
    """
    positions = [index.get(name) for name in COLUMNS]
    present = [i for i in positions if i is not None]
    width = max(present) + 1
    # A column the header lacks reads as the empty cell appended after the row's own.
    pick = itemgetter(*(width if i is None else i for i in positions))
    complete = len(present) == len(positions)

    def parse(row: list[str]) -> Coupon | Invalid:
        if not complete or len(row) < width:  # cells past the row's end read as empty
            row = row[:width] + [""] * (width + 1 - min(len(row), width))
        (ticket, number, card, flown, marketing, operating, flight, origin, destination,
         booking_class, cabin, booked, fare, currency) = pick(row)
        try:
            return coupon_of((
                ticket.strip(), int(number), card.strip(), _date(flown.strip()),
                marketing.strip().upper(), operating.strip().upper(), flight.strip(),
                origin.strip().upper(), destination.strip().upper(),
                booking_class.strip().upper(), cabin.strip() or None,
                _date(booked.strip()) if booked.strip() else None,
                int(fare) if fare.strip() else None, currency.strip().upper() or None))
        except ValueError as exc:
            placeholder = Coupon(ticket.strip() or "?", 0, card.strip(), date.min, "", "", "",
                                 "", "", "")
            return Invalid(placeholder, f"row is not a coupon: {exc}")

    return parse


def parse_row(row: list[str], index: dict[str, int]) -> Coupon | Invalid:
    """One row under this header (``row_parser`` for many)."""
    return row_parser(index)(row)


@lru_cache(maxsize=4096)
def _date(text: str) -> date:
    """ISO date; cached because a feed holds few distinct dates."""
    return date.fromisoformat(text)


def header_index(header: list[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    # camelCase headers (the API's field names) are accepted too.
    names = ["".join("_" + ch.lower() if ch.isupper() else ch for ch in h) for h in
             (x.strip() for x in header)] if not set(REQUIRED) <= set(names) else names
    index = {name: i for i, name in enumerate(names)}
    missing = [c for c in REQUIRED if c not in index]
    if missing:
        raise ImportFileInvalid(f"missing columns: {', '.join(missing)}")
    return index


def checkpoint_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKPOINT_SUFFIX)


def read_checkpoint(path: Path) -> int:
    """Rows already committed by an earlier run of this same file (0 if none or changed)."""
    try:
        data = json.loads(checkpoint_path(path).read_text())
    except (OSError, ValueError):
        return 0
    stat = path.stat()
    # Only a file that is still the same one (or has only grown: a feed appended to).
    if data.get("inode") != stat.st_ino or stat.st_size < data.get("size", 0):
        return 0
    return int(data.get("rows", 0))


def write_checkpoint(path: Path, rows: int) -> None:
    stat = path.stat()
    target = checkpoint_path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"rows": rows, "inode": stat.st_ino, "size": stat.st_size}))
    os.replace(tmp, target)


def batches(reader: Iterator[list[str]], index: dict[str, int], size: int, skip: int
            ) -> Iterator[tuple[int, list[Coupon | Invalid]]]:
    """(rows read so far after this batch, batch), skipping the first ``skip`` data rows."""
    n = 0
    batch: list[Coupon | Invalid] = []
    parse = row_parser(index)
    for row in reader:
        if not row:
            continue
        n += 1
        if n <= skip:
            continue
        batch.append(parse(row))
        if len(batch) >= size:
            yield n, batch
            batch = []
    if batch:
        yield n, batch


def card_of(row: Coupon | Invalid) -> str:
    return row.card_number if isinstance(row, Coupon) else row.coupon.card_number


def split_by_member(chunk: list[Coupon | Invalid], lanes: int
                    ) -> dict[int, list[Coupon | Invalid]]:
    """The chunk's rows by lane (the card number's CRC-32: the same lane for a card in
    every run; Python's own string hash changes from one process to the next, so the lanes
    did too), in file order within each."""
    parts: dict[int, list[Coupon | Invalid]] = {}
    for row in chunk:
        parts.setdefault(zlib.crc32(card_of(row).encode()) % lanes, []).append(row)
    return parts


def lane_batches(window: list[Coupon | Invalid], lanes: int, size: int
                 ) -> list[tuple[int, list[Coupon | Invalid]]]:
    """A window's rows as (lane, batch of up to ``size``): by member over the lanes, each
    lane's in card-number order (a member's own in file order), the lanes' batches taken
    in turn so that every lane has work.

    Why card order: a feed comes in flight or ticket order, so a batch of a thousand coupons
    is a thousand members scattered over the whole programme, and every one of them touches
    its own page of the members, accounts and balances tables and of the postings, lots and
    flown-coupon indexes by account or member; at a million coupons those outgrow the
    server's buffers and most touches were reads and writes of evicted pages. Cards are
    issued in sequence with the member and account rows, so a window sorted by card gives
    each batch a narrow run of members whose rows share pages, and the next batch the run
    beside it (2026-11-24, 400,000 coupons over 100,000 members, windows of 8 batches a
    lane: server CPU per coupon, background processes included, 73-76 to 58-59 µs; client
    33-35 to 29 µs)."""
    per_lane = {lane: sorted(rows, key=card_of)
                for lane, rows in split_by_member(window, lanes).items()}
    cut = {lane: [rows[i:i + size] for i in range(0, len(rows), size)]
           for lane, rows in sorted(per_lane.items())}
    turns = max((len(b) for b in cut.values()), default=0)
    return [(lane, batches[turn]) for turn in range(turns)
            for lane, batches in cut.items() if turn < len(batches)]


class Progress:
    def __init__(self, stream: IO[str] | None, total_bytes: int) -> None:
        self.stream, self.total = stream, total_bytes
        self.last = 0.0

    def show(self, report: ImportReport, position: int, started: float, final: bool = False
             ) -> None:
        now = time.monotonic()
        if self.stream is None or (not final and now - self.last < 0.5):
            return
        self.last = now
        elapsed = max(now - started, 1e-9)
        done = min(position / self.total, 1.0) if self.total else 1.0
        bar = "#" * int(done * 30)
        self.stream.write(
            f"\r[{bar:<30}] {done:6.1%} {report.rows:>11,} rows {report.rows / elapsed:>9,.0f}/s"
            f"  credited {report.credited:,} dup {report.duplicates:,} "
            f"rejected {sum(report.rejected.values()):,}" + ("\n" if final else ""))
        self.stream.flush()


# Batches per lane in a window of the file (see lane_batches): 192,000 rows at the defaults.
# The 1,000,000-coupon bench (100,000 members), client and server CPU per coupon, rate, the
# client's peak memory: 24 batches 28 + 54 µs, 20,371/s, 248 MB (one run); 48 batches
# 25-32 + 50-53 µs, 19,482-21,850/s, 371 MB (three runs; before the windows, 35 + 78 µs and
# 14,907/s the same hour; all on a shared machine, 2026-11-24). Memory grows with the
# window (about two are held: the one being credited and the next); a rerun after an
# interruption reads again at most the windows that had not all committed.
WINDOW_BATCHES = 48

# Objects a run allocates before the collector's first generation is examined: the default
# (700) runs a collection every few coupons, a tenth of the client's CPU in all.
BULK_GC_THRESHOLD = 50_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """A bulk run's garbage collection: what exists already (modules, the rules, the pool)
    is frozen out of the collector's sight, and collections run far less often. Almost
    everything a batch allocates is freed by reference counting anyway."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(BULK_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def import_flights(db: Database, system: SystemAccounts, path: Path, *,
                         batch_size: int = 1000, concurrency: int = 4,
                         window_batches: int = WINDOW_BATCHES,
                         lot_validity_months: int = 36, resume: bool = True,
                         progress: IO[str] | None = sys.stderr,
                         after_batch: Callable[[int], None] | None = None,
                         reevaluate_tiers: bool = True) -> ImportReport:
    """Import a CSV of flown coupons; ``after_batch(n)`` is called after each committed
    window (tests use it to interrupt a run). Tiers are brought up to date by one set-based
    pass over all members at the end (``reevaluate_tiers``), not coupon by coupon."""
    report = ImportReport()
    skip = read_checkpoint(path) if resume else 0
    report.skipped = skip
    started = time.monotonic()
    with fewer_collections(), path.open(newline="", encoding="utf-8") as handle:
        consumed = [0]  # characters read so far, for the progress bar

        def lines() -> Iterator[str]:
            for line in handle:
                consumed[0] += len(line)
                yield line

        reader = csv.reader(lines())
        try:
            index = header_index(next(reader))
        except StopIteration as exc:
            raise ImportFileInvalid("the file is empty") from exc
        size = os.fstat(handle.fileno()).st_size
        bar = Progress(progress, size)
        # One lane per concurrent transaction; a member's coupons always go to the same lane,
        # so concurrent batches never wait on each other's balance rows. A window of the file
        # is split over the lanes and counts as committed once every lane has committed all
        # its batches of it: the checkpoint stays "every row before it".
        # A lane holds up to a window's batches and then some: the reader hands a window over
        # in one go and parses the next while the lanes credit this one (with room for two
        # batches only, the lanes ran dry while it parsed). About two windows in memory.
        lanes: list[asyncio.Queue[tuple[int, int, int, list[Coupon | Invalid]] | None]] = [
            asyncio.Queue(maxsize=window_batches + 2) for _ in range(concurrency)]
        parts_left: dict[int, int] = {}  # window number -> its batches not yet committed
        done: dict[int, int] = {}  # window number -> rows read after it, until contiguous
        watermark = [0, skip]  # next window number expected, rows known committed
        committed = 0
        failures: list[BaseException] = []
        shown = [0]  # file position of the furthest window credited, for the progress bar

        async def worker(lane: int) -> None:
            while (item := await lanes[lane].get()) is not None:
                if failures:
                    continue  # drain: the run is stopping
                try:
                    await credit_part(lane, *item)
                except Exception as exc:  # re-raised by the reader below
                    failures.append(exc)

        async def credit_part(lane: int, number: int, rows_after: int, position: int,
                              part: list[Coupon | Invalid]) -> None:
            nonlocal committed
            coupons = [c for c in part if isinstance(c, Coupon)]
            outcomes = iter(await credit_coupons(
                db, system, coupons, lot_validity_months=lot_validity_months, lane=lane)
                if coupons else [])
            for c in part:
                if isinstance(c, Invalid):
                    report.add(Outcome(c.coupon, reason=Reason.INVALID_COUPON,
                                       detail=c.detail))
                else:
                    report.add(next(outcomes))
            report.rows += len(part)
            parts_left[number] -= 1
            if parts_left[number]:
                return
            del parts_left[number]
            done[number] = rows_after
            while watermark[0] in done:
                watermark[1] = done.pop(watermark[0])
                watermark[0] += 1
            write_checkpoint(path, watermark[1])
            committed += 1
            if after_batch is not None:
                after_batch(committed)
            shown[0] = max(shown[0], position)
            bar.show(report, shown[0], started)

        workers = [asyncio.create_task(worker(lane)) for lane in range(concurrency)]
        try:
            number = 0
            window: list[Coupon | Invalid] = []
            rows_after = skip
            chunks = batches(reader, index, batch_size * concurrency, skip)
            while not failures:
                chunk = next(chunks, None)
                if chunk is not None:
                    rows_after, rows = chunk
                    window += rows
                    if len(window) < batch_size * concurrency * window_batches:
                        # Parsing a whole window at once would hold the event loop for
                        # seconds, and the lanes' transactions (the server) would wait.
                        await asyncio.sleep(0)
                        continue
                if not window:
                    break
                parts = lane_batches(window, concurrency, batch_size)
                parts_left[number] = len(parts)
                for lane, part in parts:
                    await lanes[lane].put((number, rows_after, consumed[0], part))
                number += 1
                window = []
            for queue in lanes:
                await queue.put(None)
            await asyncio.gather(*workers)
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Ctrl-C: batches in flight roll back; the checkpoint only counts committed ones.
            report.interrupted = True
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if failures:
            raise failures[0]
        report.seconds = time.monotonic() - started
        bar.show(report, size, started, final=True)
    if reevaluate_tiers and report.credited and not report.interrupted:
        tiers_started = time.monotonic()
        report.tier_changes = await tiers_nightly(db, concurrency=concurrency)
        report.tier_seconds = time.monotonic() - tiers_started
    return report

