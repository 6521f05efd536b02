"""The authorisation matrix (issue 7 §5): every operation of openapi/openapi.json x anonymous,
members A and B, partners X and Y, the flight feed, agent, supervisor, marketer, admin, PassKit
devices A and B, the payment provider, and invalid credentials (a made-up token, a revoked
API key, the token of a merged membership, a suspended partner's key, a key used off its
allow-listed network), each cell checked against the app.

The table is tests/api/authz_matrix.py (rendered in docs/authorization.md); the world it names
is tests/api/authz_world.py, built once for the module. Every cell is one request through the
in-process client, and its answer must be the table's exactly: status, and the problem's code
for errors, with every error application/problem+json. A list that is allowed must hold the
caller's own resource of the world where the table says so, and none of anyone else's.

Requests that change state: an allowed call must not change what another cell reads, whatever
order the cells run in. So allowed cells send a body refused by validation (422), or hit a
business rule that refuses before anything is written (409: a voided hold, a refund above the
capture, a pool with holds...), or work on a resource of their own (a freshly issued token for
sign-out, a device registered only to be unregistered, reason codes of the matrix's own, a key
revoked before). Only partner X's webhook secret is really rotated; no cell reads it.

The ledger is verified once after the module (the world's entries included) rather than after
each of the ~1,750 cells: no allowed cell posts to it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar

from lms.api.problems import PROBLEM_JSON
from lms.app import create_app
from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.settings import PROJECT_ROOT, Settings
from tests.api.authz_matrix import ALLOWED, NO_BODY, ROWS, Outcome, Row, render
from tests.api.authz_world import (
    MEMBER_B,
    PARTNER_X,
    PARTNER_Y,
    PRINCIPALS,
    World,
    build_world,
    wallet_settings,
)
from tests.conftest import violations
from tests.factories import asgi_client

DOC = PROJECT_ROOT / "docs" / "authorization.md"
OPENAPI = PROJECT_ROOT / "openapi" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(autouse=True)
def ledger_invariants() -> None:
    """Replaces the suite's per-test ledger check: the module checks once, in ``world``."""


@pytest.fixture(scope="module")
def matrix_app(settings: Settings, db: Database,
               tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    return create_app(wallet_settings(settings, tmp_path_factory.mktemp("authz-wallet")),
                      db=db)


@pytest.fixture(scope="module")
async def world(matrix_app: Litestar, db: Database,
                system: SystemAccounts) -> AsyncIterator[World]:
    async with asgi_client(matrix_app) as client:
        yield await build_world(client, db, matrix_app.state.settings, system)
    assert await violations(db) == []


def cell_id(row: Row, principal: str) -> str:
    return f"{row.method} {row.path} as {principal}"


CELLS = [pytest.param(r, p, id=cell_id(r, p)) for r in ROWS for p in PRINCIPALS]
# Cells are independent of each other (see above), so their requests are sent side by side,
# a few at a time, before the cells are checked one by one.
CONCURRENCY = 8


@pytest.fixture(scope="module")
async def answers(world: World) -> dict[tuple[str, str, str], httpx.Response]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(row: Row, principal: str) -> httpx.Response:
        async with gate:
            return await send(world, row, principal)

    cells = [(r, p) for r in ROWS for p in PRINCIPALS]
    responses = await asyncio.gather(*(one(r, p) for r, p in cells))
    return {(r.method, r.path, p): response for (r, p), response in zip(cells, responses,
                                                                         strict=True)}


async def send(world: World, row: Row, principal: str) -> httpx.Response:
    body = b"" if row.body is NO_BODY else msgspec.json.encode(row.json(world.ids))
    headers = (await world.fresh_headers(principal, body) if row.fresh_token
               else world.headers(principal, body))
    if row.body is not NO_BODY:
        headers["Content-Type"] = "application/json"
    if row.idempotency_key:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return await world.client.request(row.method, row.url(world.ids),
                                      params=row.params_of(world.ids), content=body,
                                      headers=headers)


def describe(response: httpx.Response) -> str:
    return f"{response.status_code} {response.headers.get('content-type')} {response.text[:300]}"


def check(response: httpx.Response, expected: Outcome, world: World, row: Row,
          principal: str) -> None:
    assert response.status_code == expected.status, (
        f"expected {expected.label()}, got {describe(response)}")
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_JSON), describe(response)
        problem: dict[str, Any] = response.json()
        assert problem["status"] == expected.status, problem
        assert problem["code"] == expected.code, problem
        return
    assert expected.kind == ALLOWED
    if expected.empty:
        assert response.json() == [], describe(response)
    if expected.shows:
        assert world.ids[expected.shows] in listed_ids(response.json()), describe(response)
    if expected.hides:
        assert world.ids[expected.hides] not in listed_ids(response.json()), describe(response)
    if row.path == "/v1/partner/statements/{month}":
        own = world.ids["x_code" if principal == PARTNER_X else "y_code"]
        assert response.json()["partnerCode"] == own, describe(response)


def listed_ids(body: Any) -> list[Any]:
    """The ``id`` of every object in a JSON answer, however nested."""
    if isinstance(body, list):
        return [i for item in body for i in listed_ids(item)]
    if isinstance(body, dict):
        own = [body["id"]] if "id" in body else []
        return own + [i for value in body.values() for i in listed_ids(value)]
    return []


@pytest.mark.parametrize(("row", "principal"), CELLS)
def test_cell(world: World, answers: dict[tuple[str, str, str], httpx.Response], row: Row,
              principal: str) -> None:
    check(answers[(row.method, row.path, principal)], row.expect[principal], world, row,
          principal)


def documented_operations() -> set[tuple[str, str]]:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return {(method.upper(), path) for path, operations in document["paths"].items()
            for method in operations if method in METHODS}


def test_the_table_has_every_operation_of_the_document_and_no_other() -> None:
    table = [r.operation for r in ROWS]
    assert len(table) == len(set(table)), "an operation has two rows"
    documented = documented_operations()
    missing = sorted(documented - set(table))
    unknown = sorted(set(table) - documented)
    assert not missing, f"operations without a row in tests/api/authz_matrix.py: {missing}"
    assert not unknown, f"rows for operations openapi/openapi.json lacks: {unknown}"


def test_every_row_has_a_cell_for_every_principal_and_path_parameter() -> None:
    for r in ROWS:
        assert set(r.expect) == set(PRINCIPALS), r.operation
        named = {part[1:-1] for part in r.path.split("/") if part.startswith("{")}
        assert named == set(r.params), r.operation


def test_no_one_but_the_owner_is_allowed_at_what_the_owner_owns() -> None:
    """Rows naming X's resources refuse partner Y; rows of the member's own endpoints naming
    A's refuse member B."""
    for r in ROWS:
        refs = set(r.params.values()) | set(r.query.values())
        if any(ref.startswith("x_") for ref in refs) and r.path.startswith("/v1/partner/"):
            assert r.expect[PARTNER_Y].kind != ALLOWED or r.expect[PARTNER_Y].empty, r.operation
        if any(ref.startswith("a_") for ref in refs) and r.path.startswith("/v1/me/"):
            assert r.expect[MEMBER_B].kind != ALLOWED, r.operation


def test_docs_authorization_md_is_the_table() -> None:
    committed = DOC.read_text(encoding="utf-8") if Path(DOC).exists() else ""
    assert committed == render(), (
        "docs/authorization.md is not the table of tests/api/authz_matrix.py: run "
        "`uv run python -m tests.api.authz_matrix > docs/authorization.md`")
