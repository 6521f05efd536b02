"""The fuzzer: schemathesis' generated cases for one operation, each sent as every role.

Used by the suite (tests/fuzz/test_fuzz.py, a small budget) and by ``./dev fuzz`` (a larger
one, with a summary).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lms.settings import PROJECT_ROOT
from tests.fuzz.checks import problem_json
from tests.fuzz.world import ROLES, World

SCHEMA = schemathesis.openapi.from_path(PROJECT_ROOT / "openapi" / "openapi.json")
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
AnyCase = schemathesis.Case[Any]


def operations() -> list[Operation]:
    """Every operation of the document; one it cannot read fails the run, not skipped."""
    found: list[Operation] = []
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


OPERATIONS = operations()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, problem_json]
# Operations that end the credentials they are called with get fresh ones each time.
SIGNS_OUT = {"POST /v1/auth/logout"}


@dataclass(frozen=True)
class Budget:
    examples: int
    seed: int | None


def budget() -> Budget:
    """LMS_FUZZ_EXAMPLES cases per operation (default 1); LMS_FUZZ_SEED, or a fixed
    derandomised run when unset."""
    seed = os.environ.get("LMS_FUZZ_SEED")
    return Budget(int(os.environ.get("LMS_FUZZ_EXAMPLES", "1")),
                  int(seed) if seed else None)


@dataclass
class Summary:
    """What was sent and answered, over every operation fuzzed in this run."""

    operations: int = 0
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self, total_operations: int, budget: Budget) -> list[str]:
        seed = budget.seed if budget.seed is not None else "none (derandomised)"
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        lines = [
            f"fuzz: seed {seed}, {budget.examples} examples per operation, "
            f"{self.operations}/{total_operations} operations x {len(ROLES)} roles",
            f"fuzz: {self.cases} cases, {sum(self.statuses.values())} requests in "
            f"{self.seconds:.1f} s; statuses {statuses}",
            f"fuzz: {len(self.failures)} operations failed",
        ]
        lines += [f"fuzz:   {label}: {reason}" for label, reason in self.failures.items()]
        return lines


class Fuzzer:
    def __init__(self, world: World, summary: Summary) -> None:
        self.world = world
        self.summary = summary
        self.sessions = {role: requests.Session() for role in ROLES}
        self.pool = ThreadPoolExecutor(len(ROLES), thread_name_prefix="fuzz")

    def __enter__(self) -> Fuzzer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.pool.shutdown()
        for session in self.sessions.values():
            session.close()

    def send(self, case: AnyCase, role: str) -> tuple[requests.Response, dict[str, str]]:
        headers = (self.world.sign_in(role) if case.operation.label in SIGNS_OUT
                   else self.world.headers[role])
        kwargs = case.as_transport_kwargs(base_url=self.world.base_url, headers=headers)
        return self.sessions[role].request(**kwargs, timeout=60), headers

    def run(self, operation: Operation, budget: Budget) -> None:
        """Generated cases (schema-valid and -invalid) for ``operation``, each sent as every
        role side by side; every answer checked. Raises on the first failing case, shrunk."""
        summary = self.summary
        summary.operations += 1
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @hypothesis.settings(max_examples=budget.examples, database=None, deadline=None,
                             derandomize=budget.seed is None, print_blob=False,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=strategy)
        def each_role(case: AnyCase) -> None:
            summary.cases += 1
            answers = list(self.pool.map(lambda role: self.send(case, role), ROLES))
            for role, (response, headers) in zip(ROLES, answers, strict=True):
                summary.statuses[response.status_code] += 1
                hypothesis.note(f"as {role}: {response.status_code}")
                case.validate_response(response, checks=CHECKS, headers=headers)

        if budget.seed is not None:
            each_role = hypothesis.seed(budget.seed)(each_role)
        started = time.monotonic()
        try:
            each_role()
        except BaseException as exc:
            summary.failures[operation.label] = first_line(exc)
            raise
        finally:
            summary.seconds += time.monotonic() - started


def first_line(exc: BaseException) -> str:
    """The failed checks' names, e.g. 'Undocumented status code'."""
    failures = getattr(exc, "exceptions", None)
    if failures:
        return "; ".join(sorted({first_line(e) for e in failures}))
    title = getattr(exc, "title", None)
    return str(title) if title else (str(exc).splitlines() or [type(exc).__name__])[0]
