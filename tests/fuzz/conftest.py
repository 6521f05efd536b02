"""Fixtures of the fuzzer, and its summary at the end of the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from lms.settings import Settings
from tests.fuzz.runner import OPERATIONS, Fuzzer, Summary, budget
from tests.fuzz.world import World, fuzz_world

SUMMARY = Summary()


@pytest.fixture(scope="session")
def background() -> Iterator[list[threading.Thread]]:
    """Clean-ups left to run beside the following tests (dropping a database waits for a
    checkpoint of the shared server); joined at the end of the session."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join()


@pytest.fixture(scope="module")
def world(settings: Settings, tmp_path_factory: pytest.TempPathFactory,
          background: list[threading.Thread]) -> Iterator[World]:
    with fuzz_world(settings, tmp_path_factory.mktemp("fuzz-data"), background) as w:
        yield w


@pytest.fixture(scope="module")
def fuzzer(world: World) -> Iterator[Fuzzer]:
    with Fuzzer(world, SUMMARY) as f:
        yield f


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY.operations:
        b = budget()
        for line in SUMMARY.lines(len(OPERATIONS), b):
            terminalreporter.write_line(line)
