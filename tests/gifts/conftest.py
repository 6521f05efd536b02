from __future__ import annotations

import pytest

from lms.db import Database
from tests.family.support import load_demo_rules


@pytest.fixture(autouse=True)
async def programme_rules(db: Database) -> None:
    await load_demo_rules(db)
