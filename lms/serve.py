"""``lms serve``: uvicorn, with several worker processes each on a listening socket of its own.

uvicorn's own ``--workers`` shares one listening socket between its processes, and asyncio's
accept loop takes every connection waiting in the queue at each wake-up: 32 clients that
connect together were split 4/28, 26/6, 10/22 between two workers (measured here), so one
worker ran most of the load on one core while the other idled. With ``SO_REUSEPORT`` each
worker listens on a socket of its own bound to the same address, and the kernel spreads new
connections across them by a hash of the client's address and port.

The parent only supervises: it starts the workers, starts again one that dies (as uvicorn's
supervisor does), and stops them all on SIGINT or SIGTERM. One worker, or a system without
``SO_REUSEPORT``, runs uvicorn as before.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

APP = "lms.app:create_app"
BACKLOG = 2048
# A worker that keeps dying at start (a bad setting, the port taken) is not restarted in a
# tight loop.
RESTART_PAUSE = 1.0
STOP_TIMEOUT = 20.0

log = logging.getLogger("lms.serve")


def serve(host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    import uvicorn

    if workers <= 1 or port == 0 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **options)
        return
    Supervisor(host, port, workers, options).run()


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket of this worker's own in the port's SO_REUSEPORT group, bound but not yet
    listening: uvicorn listens once the app has started, so that the kernel sends no
    connection to a worker still loading (a restarted worker's share would wait seconds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: uvicorn on its own socket (the target of a spawned process)."""
    import uvicorn

    sock = bound_socket(host, port)
    config = uvicorn.Config(APP, factory=True, host=host, port=port, backlog=BACKLOG,
                            **options)
    # Ctrl-C reaches every process of the group: uvicorn shuts down as it does on SIGTERM,
    # then raises the SIGINT it caught again, which would end the worker with a traceback and
    # a failure status for a stop that went as asked.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    def __init__(self, host: str, port: int, workers: int, options: dict[str, Any]) -> None:
        self.host, self.port, self.workers, self.options = host, port, workers, options
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[SpawnProcess] = []
        self.stopping = False

    def start_one(self) -> SpawnProcess:
        process = self.context.Process(target=run_worker, name="lms-serve-worker",
                                       args=(self.host, self.port, self.options))
        process.start()
        return process

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        self.processes = [self.start_one() for _ in range(self.workers)]
        log.info("serving on %s:%d with %d workers (SO_REUSEPORT)", self.host, self.port,
                 self.workers)
        try:
            while not self.stopping:
                wait([p.sentinel for p in self.processes], timeout=0.5)
                for i, process in enumerate(self.processes):
                    if process.exitcode is not None and not self.stopping:
                        log.warning("worker %s exited with %s; starting another",
                                    process.pid, process.exitcode)
                        time.sleep(RESTART_PAUSE)
                        self.processes[i] = self.start_one()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        for process in self.processes:
            if process.exitcode is None and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn finishes what it is answering
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
