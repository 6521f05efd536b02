"""schemathesis against openapi/openapi.json: every operation, as every role.

Each generated request (schema-valid and schema-invalid ones) is sent once per role, to the
real app over HTTP on a database of its own. Checks: no 5xx, every status code, content type
and body as documented, every error problem+json with our stable ``code``. The budget is small
here, for a loaded CI machine: LMS_FUZZ_EXAMPLES cases per operation (default 1, sent as all
eight roles), deterministic unless LMS_FUZZ_SEED is set. ``./dev fuzz`` (``make fuzz``) runs
the same with a larger budget and a seed.
"""

from __future__ import annotations

import pytest

from tests.fuzz.runner import OPERATIONS, Fuzzer, Operation, budget
from tests.fuzz.world import World, ledger_violations


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_role_gets_documented_answers(operation: Operation,
                                            fuzzer: Fuzzer) -> None:
    fuzzer.run(operation, budget())


def test_the_ledger_still_verifies_after_fuzzing(world: World, fuzzer: Fuzzer) -> None:
    assert ledger_violations(world) == []
