"""Fault tests (issue 7 §3): real processes killed in the middle of real work; see
docs/reliability.md, "Faults"."""

import pytest

# The checks shared by the tests live in load.py; show their values when they fail.
pytest.register_assert_rewrite("tests.chaos.load")
