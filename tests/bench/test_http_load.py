"""bench/http_load.py runs end to end for a few seconds against a small generated database,
so that the benchmark cannot rot: its table, its figures and its last line are there, and
nothing it did was refused unexpectedly."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from lms.generator.load import Options, generate
from lms.settings import Settings
from tests import conftest
from tests.conftest import drop_database, migrated_database

BENCH = Path(__file__).resolve().parents[2] / "bench" / "http_load.py"


@pytest.fixture(scope="module")
def small_population() -> Iterator[str]:
    url = migrated_database(f"lms_test_{os.getpid()}_http_load")
    generate(url, Settings(database_url=url, system_account_shards=4, log_level="WARNING"),
             Options(members=40, seed=11), lambda _: None)
    yield url
    drop_database(url)


@pytest.mark.slow
def test_the_load_benchmark_prints_its_table_and_ratio_without_errors(
        small_population: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--database-url", small_population, "--duration", "2",
         "--clients", "4", "--workers", "1", "--members", "40", "--sign-ins", "1",
         "--pgbench-seconds", "1", "--pgbench-scale", "1",
         "--pgbench-database", f"lms_test_{os.getpid()}_pgbench"],
        capture_output=True, text=True, timeout=600)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert re.search(r"^read the sampled members' rows in [\d.]+ s", out, re.M), out
    for phase in ("mix", "transfers", "reads"):
        assert f"phase {phase}: 4 clients" in out
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(\w+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +(\d+) +(\d+) +(\d+)$", out, re.M)}
    for op in ("balance", "accrual", "gift", "code", "total"):
        assert op in rows, out
    assert float(rows["balance"][0]) > 0 and int(rows["balance"][4]) > 0
    assert re.search(r"^pgbench tpc-b tps \d+$", out, re.M), out
    assert re.search(r"^balance reads/s \d+ \(target 5000\), p99 [\d.]+ ms", out, re.M), out
    assert "unexpected errors 0" in out, out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio \d+\.\d\d", last), last
    assert float(last.split()[1]) > 0


@pytest.mark.slow
def test_the_api_alone_reads_and_its_floor_without_pgbench(small_population: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--database-url", small_population, "--duration", "2",
         "--clients", "4", "--workers", "1", "--members", "40", "--sign-ins", "1",
         "--phases", "reads,floor", "--pgbench-seconds", "0"],
        capture_output=True, text=True, timeout=600)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "phase floor: 4 clients" in out and "pgbench" not in out, out
    assert re.search(r"^health +[\d.]+ .* 0$", out, re.M), out
    assert "unexpected errors 0" in out, out
    assert out.strip().splitlines()[-1] == "ratio n/a"


def load_bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_freshly_loaded_table_is_vacuumed_before_the_phases_and_only_then(
        capsys: pytest.CaptureFixture[str]) -> None:
    url = conftest.recreate_database(conftest.server_url(), f"lms_test_{os.getpid()}_settle")
    try:
        with psycopg.connect(conftest.plain(url), autocommit=True) as conn:
            conn.execute("CREATE TABLE loaded (i int)")
            conn.execute("CREATE TABLE small (i int)")
            conn.execute("INSERT INTO loaded SELECT generate_series(1, 150000)")
            conn.execute("INSERT INTO small SELECT generate_series(1, 500)")
            conn.execute("SELECT pg_stat_force_next_flush()")
        settle = load_bench_module().settle
        settle(url)
        assert re.search(r"^vacuumed loaded, which autovacuum was due to visit, in \d+ s",
                         capsys.readouterr().out, re.M)
        with psycopg.connect(conftest.plain(url)) as conn:
            vacuumed: dict[str, bool] = dict(conn.execute(
                "SELECT relname, last_vacuum IS NOT NULL FROM pg_stat_user_tables").fetchall())
        assert vacuumed == {"loaded": True, "small": False}
        settle(url)
        assert capsys.readouterr().out == ""
    finally:
        drop_database(url)


def test_the_sample_is_read_once_before_the_phases(small_population: str) -> None:
    with psycopg.connect(conftest.plain(small_population)) as conn:
        cards = [r[0] for r in conn.execute(
            "SELECT card_number FROM members ORDER BY id LIMIT 10").fetchall()]
        truth = conn.execute("""
            WITH m AS (SELECT account_id FROM members WHERE card_number = ANY(%(cards)s))
            SELECT (SELECT count(*) FROM m),
                   (SELECT count(*) FROM balances WHERE account_id IN (SELECT * FROM m)),
                   (SELECT sum(remaining) FROM lots WHERE account_id IN (SELECT * FROM m)),
                   (SELECT count(*) FROM holds WHERE account_id IN (SELECT * FROM m)),
                   (SELECT count(*) FROM postings WHERE account_id IN (SELECT * FROM m))""",
            {"cards": cards}).fetchone()
    assert truth is not None
    read = load_bench_module().warm(small_population, [*cards, "no such card"])
    assert read == tuple(int(n or 0) for n in truth)
    assert read[0] == 10 and read[2] > 0 and read[4] > 0
