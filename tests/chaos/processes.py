"""Real processes the fault tests kill: ``lms serve`` and ``lms worker``, each in a process
group of its own so that SIGKILL takes every process it started (uvicorn, Celery's pool)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from lms.settings import PROJECT_ROOT

START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lms_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of an ``lms`` child: this one without any LMS_ setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    return env | {"LMS_DATABASE_URL": database_url, "LMS_LOG_LEVEL": "WARNING"} | extra


class Process:
    """One ``lms`` command, started again after each kill, its output appended to ``log``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.argv = argv
        self.env = dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lms.cli", *self.argv], cwd=PROJECT_ROOT, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL to the whole group: no handler runs, nothing is flushed or acknowledged."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


class ApiServer(Process):
    """``lms serve`` on a free port of the loopback."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--no-migrate", "--host", "127.0.0.1",
                          "--port", str(self.port)], env, log)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def start_and_wait(self) -> float:
        """Start and wait until /health answers; the seconds that took."""
        began = time.monotonic()
        self.start()
        while not self.healthy():
            if self.exited() is not None:
                raise RuntimeError(f"lms serve exited with {self.exited()}:\n{self.output()}")
            if time.monotonic() - began > START_TIMEOUT:
                raise RuntimeError(f"lms serve did not answer in {START_TIMEOUT}s:\n"
                                   f"{self.output()}")
            time.sleep(0.1)
        return time.monotonic() - began


class WorkerProcess(Process):
    """``lms worker`` without the scheduler, consuming one queue of its own."""

    def __init__(self, env: Mapping[str, str], log: Path, queue: str, *,
                 concurrency: int = 1) -> None:
        self.queue = queue
        super().__init__(["worker", "--no-beat", f"--concurrency={concurrency}",
                          f"--queues={queue}",
                          f"--hostname={queue}@%h", "--loglevel=INFO"], env, log)

    def start_and_wait(self) -> None:
        ready_before = self.output().count(" ready.")
        self.start()
        deadline = time.monotonic() + START_TIMEOUT
        while self.output().count(" ready.") == ready_before:
            if self.exited() is not None:
                raise RuntimeError(f"lms worker exited with {self.exited()}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"lms worker not ready in {START_TIMEOUT}s:\n"
                                   f"{self.output()}")
            time.sleep(0.1)


def ledger_verify(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``lms ledger verify`` against the database of ``env``: exit 0 when every invariant
    holds."""
    return subprocess.run([sys.executable, "-m", "lms.cli", "ledger", "verify"], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
