"""What the benchmarks share: which server they run on, scratch databases, and pgbench.

Each benchmark prints its own figure beside pgbench's TPC-B-like TPS measured on the same
PostgreSQL in the same run, so that a figure can be read against what the machine gives.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from lms.db import embedded_postgres_url, to_sync_url
from lms.settings import PROJECT_ROOT

PGBENCH_DATABASE = "lms_bench_pgbench"


def server_url() -> str:
    url = os.environ.get("LMS_BENCH_DATABASE_URL") or os.environ.get("LMS_TEST_DATABASE_URL")
    return url or embedded_postgres_url(PROJECT_ROOT / ".lms-data" / "bench")


def plain(url: str) -> str:
    return to_sync_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def database(url: str, name: str) -> str:
    return plain(url).rsplit("/", 1)[0].split("?")[0] + "/" + name + (
        "?" + plain(url).split("?", 1)[1] if "?" in plain(url) else "")


def recreate(url: str, name: str) -> str:
    with psycopg.connect(database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database(url, name)


def pgbench_args(url: str) -> list[str]:
    parts = urlsplit(plain(url))
    host = parts.hostname or dict(
        p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("host", "")
    args = ["-h", host, "-U", parts.username or "postgres"]
    if parts.port:
        args += ["-p", str(parts.port)]
    return args


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    import pgserver  # the embedded server ships its own binaries

    candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    if candidate.exists():
        return str(candidate)
    raise SystemExit("pgbench not found")


def pgbench_init(url: str, scale: int, name: str = PGBENCH_DATABASE) -> None:
    """A fresh pgbench database ``name`` on the server of ``url``."""
    recreate(url, name)
    subprocess.run([pgbench_binary(), *pgbench_args(url), "-i", "-q", "-s", str(scale), name],
                   check=True, capture_output=True)


def pgbench_tps(url: str, clients: int, seconds: int, name: str = PGBENCH_DATABASE) -> float:
    """pgbench's built-in TPC-B-like script on the database ``pgbench_init`` made."""
    out = subprocess.run(
        [pgbench_binary(), *pgbench_args(url), "-c", str(clients), "-j", str(min(2, clients)),
         "-T", str(seconds), name],
        check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    if not match:
        raise SystemExit("could not read pgbench output:\n" + out)
    return float(match.group(1))


def pgbench_drop(url: str, name: str = PGBENCH_DATABASE) -> None:
    with psycopg.connect(database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_pgbench(url: str, clients: int, seconds: int, scale: int) -> float:
    pgbench_init(url, scale)
    return pgbench_tps(url, clients, seconds)
