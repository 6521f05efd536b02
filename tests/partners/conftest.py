"""Fixtures of the partner tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lms.db import Database
from lms.settings import Settings
from tests.partners.support import admin_headers, issue_key, make_partner


@pytest.fixture
async def admin(db: Database, settings: Settings) -> dict[str, str]:
    return await admin_headers(db, settings)


@pytest.fixture
async def shop(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    """A partner with a key of scope ``accrue``."""
    partner = await make_partner(client, admin)
    return {"partner": partner, "key": await issue_key(client, admin, partner["code"])}
