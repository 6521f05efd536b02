"""``lms serve --workers N``: each worker listens on a socket of its own (SO_REUSEPORT), so the
kernel spreads connections across workers; a worker that dies is replaced; SIGTERM stops all.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.processes import ApiServer, lms_env

WORKERS = 2
CONNECTIONS = 32


def children(pid: int) -> list[int]:
    """The worker processes of ``lms serve`` (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        pids = [int(child) for child in handle.read().split()]
    workers = []
    for child in pids:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as handle:
                if b"spawn_main" in handle.read():
                    workers.append(child)
        except OSError:  # gone meanwhile
            continue
    return workers


def socket_inodes(port: int, state: str) -> set[str]:
    """Inodes of the loopback TCP sockets on ``port`` in ``state`` (0A listen, 01 established),
    from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


def owned(pid: int, inodes: set[str]) -> set[str]:
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            mine.add(target[8:-1])
    return mine


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    env = lms_env(database_url, LMS_DATA_DIR=str(tmp_path), LMS_DB_POOL_SIZE="2",
                  LMS_DB_MAX_OVERFLOW="2")
    api = ApiServer(env, tmp_path / "serve.log")
    api.argv += ["--workers", str(WORKERS)]
    api.start_and_wait()
    assert api.proc is not None
    parent = api.proc.pid

    def all_listening() -> bool:
        workers = children(parent)
        listening = socket_inodes(api.port, "0A")
        return len(workers) == WORKERS and all(owned(pid, listening) for pid in workers)

    # /health answers as soon as one worker listens: wait for all of them.
    wait_for(all_listening)
    try:
        yield api
    finally:
        api.stop()


def test_each_worker_listens_on_its_own_socket_and_takes_a_share_of_the_connections(
        server: ApiServer) -> None:
    assert server.proc is not None
    workers = children(server.proc.pid)
    listening = socket_inodes(server.port, "0A")
    own = [owned(pid, listening) for pid in workers]
    # One socket each, none shared (uvicorn's own --workers shares one socket, and one
    # worker's accept loop takes every connection waiting at once).
    assert [len(sockets) for sockets in own] == [1] * WORKERS
    assert len(set().union(*own)) == WORKERS

    clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CONNECTIONS)]
    try:
        for sock in clients:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        for sock in clients:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        established = socket_inodes(server.port, "01")
        shares = [len(owned(pid, established)) for pid in workers]
    finally:
        for sock in clients:
            sock.close()
    assert sum(shares) == CONNECTIONS
    # Spread by a hash of the client's port: a share under 4 of 32 has odds of about 1 in
    # 400,000 when the kernel spreads them; the shared socket gave 4/28 and 26/6.
    assert min(shares) >= 4, shares


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(server: ApiServer) -> None:
    assert server.proc is not None
    parent = server.proc.pid
    first, second = children(parent)
    os.kill(first, signal.SIGKILL)
    replacements: list[int] = []

    def replaced() -> bool:
        # One read of the workers: a process being spawned is not one yet.
        replacements[:] = [pid for pid in children(parent) if pid not in (first, second)]
        return bool(replacements) and bool(
            owned(replacements[0], socket_inodes(server.port, "0A")))

    wait_for(replaced)
    assert first not in children(parent)
    assert server.healthy()

    workers = children(parent)
    os.kill(parent, signal.SIGTERM)
    server.proc.wait(timeout=30)
    assert server.proc.returncode == 0
    # Joined (and so reaped) by the supervisor before it exits.
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []


def test_ctrl_c_stops_every_worker_quietly(server: ApiServer) -> None:
    assert server.proc is not None
    parent = server.proc.pid
    workers = children(parent)
    # What Ctrl-C in a terminal does: SIGINT to the whole foreground process group.
    os.killpg(parent, signal.SIGINT)
    server.proc.wait(timeout=30)
    assert server.proc.returncode == 0
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []
    assert "Traceback" not in server.output(), server.output()
