"""What the benchmarks share: which server they run on, scratch databases, and pgbench.

Each benchmark prints its own figure beside pgbench's TPC-B-like TPS measured on the same
PostgreSQL in the same run, so that a figure can be read against what the machine gives.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import threading
import time
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """utime + stime of a process in seconds, from /proc; None once it has ended (or when it
    runs on another machine: the benches read the server's CPU only when it is local)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class BackendCpu:
    """CPU (user + system) of the PostgreSQL backends serving database ``name``, sampled from
    /proc every ``interval`` s by a thread while the ``with`` block runs; 0 if PostgreSQL is
    not on this machine.

    By default a backend counts from its start: right for connections opened for the measured
    work (an import, pgbench), which end with it. ``since_first_sample`` makes a backend's
    first reading its baseline instead, for a window in the life of connections opened
    before (a phase of a bench whose pool is already open); ``start_at`` and ``end_at``
    (``time.time()``) bound that window. Either way up to one interval of a backend that
    ends inside the window is missed, so the figure reads slightly low.
    """

    def __init__(self, url: str, name: str, *, since_first_sample: bool = False,
                 start_at: float = 0.0, end_at: float = math.inf,
                 interval: float = 0.2) -> None:
        self.url, self.name, self.interval = database(url, "postgres"), name, interval
        self.since_first_sample = since_first_sample
        self.start_at, self.end_at = start_at, end_at
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                now = time.time()
                if now > self.end_at:
                    return
                if now >= self.start_at:
                    for (pid,) in conn.execute(
                            "SELECT pid FROM pg_stat_activity WHERE datname = %s",
                            (self.name,)).fetchall():
                        cpu = process_cpu(pid)
                        if cpu is not None:
                            self.first.setdefault(pid, cpu if self.since_first_sample else 0.0)
                            self.last[pid] = cpu
                if self._stop.wait(self.interval):
                    return
