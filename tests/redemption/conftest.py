"""Fixtures of the redemption tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.partners.support import admin_headers
from tests.redemption.support import funded_member, redeeming_partner


@pytest.fixture
async def admin(db: Database, settings: Settings) -> dict[str, str]:
    return await admin_headers(db, settings)


@pytest.fixture
async def shop(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    return await redeeming_partner(client, admin)


@pytest.fixture
async def member(client: httpx.AsyncClient, db: Database,
                 system: SystemAccounts) -> dict[str, Any]:
    return await funded_member(client, db, system, 10_000)
