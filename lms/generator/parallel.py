"""Worker processes of the generator: each simulates its share of the chunks and encodes
them as COPY binary data, which the loading process only streams to PostgreSQL.

Parallel chunks need ids before the chunks before them are done, so each chunk gets a block of
ids per table, sized from a sample of members with a wide margin (members, accounts and card
numbers are exact: one per member). What a block does not use is a gap in the ids, as a
rolled-back insert leaves one. ``balance_after`` of a system account must run in posting
order, so each worker posts only to its own share of the system shards and partners: every
shard's postings then come from one worker, in the order of its chunks, which is id order.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from typing import Any

import psycopg
from psycopg._copy_base import BinaryFormatter
from psycopg.adapt import Transformer
from psycopg.pq import Format

from lms.generator.simulate import Context, Counters, Rows, Simulator, SystemBook

# Table -> (COPY columns, binary types, attribute of Rows). The order is the load order
# (foreign keys: accounts before balances and members, entries before holds).
TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "accounts": ("id, kind, allow_negative, status, created_at",
                 ("int8", "text", "bool", "text", "timestamptz"), "accounts"),
    "balances": ("account_id, unit, posted, held, allow_negative",
                 ("int8", "text", "int8", "int8", "bool"), "balances"),
    "members": ("id, card_number, account_id, email, password_hash, first_name, last_name, "
                "phone, phone_region, birth_date, locale, timezone, status, tier, "
                "tier_valid_until, joined_at, last_activity_at",
                ("int8", "text", "int8", "text", "text", "text", "text", "text", "text", "date",
                 "text", "text", "text", "text", "timestamptz", "timestamptz", "timestamptz"),
                "members"),
    "journal_entries": ("id, kind, actor_type, actor_id, description, source, external_ref, "
                        "hold_id, effective_at, created_at",
                        ("int8", "text", "text", "text", "text", "text", "text", "int8",
                         "timestamptz", "timestamptz"), "entries"),
    "postings": ("id, entry_id, account_id, unit, amount, balance_after, created_at",
                 ("int8", "int8", "int8", "text", "int8", "int8", "timestamptz"), "postings"),
    "lots": ("id, account_id, entry_id, amount, remaining, expires_at, created_at",
             ("int8", "int8", "int8", "int8", "int8", "timestamptz", "timestamptz"), "lots"),
    "holds": ("id, account_id, unit, amount, captured, status, actor_type, actor_id, "
              "reference, entry_id, expires_at, created_at, closed_at",
              ("int8", "int8", "text", "int8", "int8", "text", "text", "text", "text", "int8",
               "timestamptz", "timestamptz", "timestamptz"), "holds"),
}
# Tables whose ids are handed out in per-chunk blocks (the Counters fields).
BLOCKED = ("entry", "posting", "lot", "hold")


@dataclass(frozen=True, slots=True)
class Plan:
    """What every worker needs: the run's constants and where each chunk's ids start."""

    ctx: Context
    members: int
    chunk: int
    seed: int
    first: Counters
    block: dict[str, int]
    posted: dict[tuple[int, str], int]

    @property
    def chunks(self) -> int:
        return -(-self.members // self.chunk)

    def counters(self, chunk_no: int) -> Counters:
        at = chunk_no * self.chunk
        f = self.first
        return Counters(member=f.member + at, account=f.account + at, card=f.card + at,
                        entry=f.entry + chunk_no * self.block["entry"],
                        posting=f.posting + chunk_no * self.block["posting"],
                        lot=f.lot + chunk_no * self.block["lot"],
                        hold=f.hold + chunk_no * self.block["hold"])


@dataclass(frozen=True, slots=True)
class Chunk:
    number: int
    data: dict[str, bytes]
    rows: dict[str, int]
    tiers: dict[str, int]
    ends: dict[str, int]


def share(items: tuple[Any, ...], worker: int, workers: int) -> tuple[Any, ...]:
    mine = tuple(x for i, x in enumerate(items) if i % workers == worker)
    if not mine:
        raise ValueError(f"{workers} workers need at least {workers} of each system account")
    return mine


def worker_context(ctx: Context, worker: int, workers: int) -> Context:
    return replace(ctx, issuance=share(ctx.issuance, worker, workers),
                   qualification=share(ctx.qualification, worker, workers),
                   redemptions=share(ctx.redemptions, worker, workers),
                   breakage=share(ctx.breakage, worker, workers),
                   partners=share(ctx.partners, worker, workers))


def chunk_rng(seed: int, chunk_no: int) -> random.Random:
    return random.Random(seed * 1_000_003 + chunk_no)  # noqa: S311 - demo data, not secrets


def encode(rows: list[tuple[Any, ...]], types: tuple[str, ...]) -> bytes:
    """Rows as one complete COPY binary stream (signature, rows, trailer)."""
    transformer = Transformer()
    transformer.set_dumper_types([psycopg.adapters.types[t].oid for t in types],
                                 Format.BINARY)
    formatter = BinaryFormatter(transformer)
    parts = [formatter.write_row(row) for row in rows]
    parts.append(formatter.end())
    return b"".join(bytes(p) for p in parts)


def simulate_chunk(sim: Simulator, plan: Plan, chunk_no: int) -> Chunk:
    sim.ids = plan.counters(chunk_no)
    start = plan.counters(chunk_no)
    rng = chunk_rng(plan.seed, chunk_no)
    rows = Rows()
    for _ in range(min(plan.chunk, plan.members - chunk_no * plan.chunk)):
        sim.member(rng, rows)
    ends = {}
    for name in BLOCKED:
        used = getattr(sim.ids, name) - getattr(start, name)
        if used > plan.block[name]:
            raise RuntimeError(f"chunk {chunk_no} used {used} {name} ids, more than its "
                               f"block of {plan.block[name]}")
        ends[name] = getattr(sim.ids, name)
    data, counts = {}, {}
    for table, (_, types, attr) in TABLES.items():
        table_rows: list[tuple[Any, ...]] = getattr(rows, attr)
        counts[table] = len(table_rows)
        if table_rows:
            data[table] = encode(table_rows, types)
    return Chunk(chunk_no, data, counts, dict(rows.tiers), ends)


def worker_main(plan: Plan, worker: int, workers: int, out: Queue[Any]) -> None:
    """Chunks worker, worker + workers, ... in order, then the worker's system deltas."""
    try:
        book = SystemBook(plan.posted)
        sim = Simulator(worker_context(plan.ctx, worker, workers), plan.first, book)
        for chunk_no in range(worker, plan.chunks, workers):
            out.put(("chunk", simulate_chunk(sim, plan, chunk_no)))
        out.put(("done", book.deltas()))
    except BaseException:
        out.put(("error", traceback.format_exc()))
