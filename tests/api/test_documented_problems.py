"""The framework's own errors are documented as the app answers them (found by fuzzing).

Litestar documented a validation failure as a 400 ``application/json`` body of its own shape;
the app answers a 422 ``validation_error`` problem, and a body that is not JSON a 400
``malformed_body`` problem. Clients generated from the document then saw undocumented
statuses and bodies.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from lms.api.openapi import MAX_ID
from lms.api.problems import PROBLEM_JSON
from lms.db import Database
from lms.settings import PROJECT_ROOT, Settings
from tests.api.test_problems import assert_problem
from tests.factories import bearer, register_member
from tests.partners.support import admin_headers, issue_key, make_partner

# The committed document (tests/test_openapi.py keeps it current): building it twice in one
# process would draw its random examples differently.
DOCUMENT: dict[str, Any] = json.loads(
    (PROJECT_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation)
            for path, item in DOCUMENT["paths"].items()
            for method, operation in item.items()]


def documented(method: str, path: str, status: int) -> dict[str, Any]:
    response: dict[str, Any] = DOCUMENT["paths"][path][method.lower()]["responses"].get(
        str(status))
    assert response is not None, f"{method} {path} does not document {status}"
    return response


def test_every_error_response_is_documented_as_a_problem() -> None:
    for method, path, operation in operations():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response.get("content", {})) == [PROBLEM_JSON], (
                    method, path, status, response)


def test_every_operation_with_input_documents_422_validation_error() -> None:
    for method, path, operation in operations():
        if operation.get("parameters") or operation.get("requestBody"):
            assert "validation_error" in documented(method, path, 422)["description"], (
                method, path)


def test_every_operation_with_a_body_documents_400_malformed_body() -> None:
    for method, path, operation in operations():
        if operation.get("requestBody"):
            assert "malformed_body" in documented(method, path, 400)["description"], (
                method, path)


def assert_fits_problem_schema(body: dict[str, Any]) -> None:
    schema = DOCUMENT["components"]["schemas"]["Problem"]
    assert set(schema["required"]) <= set(body), body
    assert set(body) <= set(schema["properties"]), body


async def test_a_bad_path_parameter_is_the_documented_422(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    response = await client.get("/v1/me/mile-purchases/-1", headers=bearer(member["accessToken"]))
    assert_problem(response, 422, "validation_error")
    documented("GET", "/v1/me/mile-purchases/{purchase_id}", 422)
    assert_fits_problem_schema(response.json())


async def test_a_bad_query_parameter_is_the_documented_422(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    response = await client.get("/v1/me/mile-purchases", params={"limit": "many"},
                                headers=bearer(member["accessToken"]))
    assert_problem(response, 422, "validation_error")
    documented("GET", "/v1/me/mile-purchases", 422)
    assert_fits_problem_schema(response.json())


async def test_a_body_that_is_not_json_is_the_documented_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/token", content=b"\x00not json",
                                 headers={"content-type": "application/json"})
    assert_problem(response, 400, "malformed_body")
    assert documented("POST", "/v1/auth/token", 400)["content"] == {
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert_fits_problem_schema(response.json())


async def test_an_id_beyond_bigint_is_the_documented_422(client: httpx.AsyncClient,
                                                         db: Database,
                                                         settings: Settings) -> None:
    """Found by fuzzing: an id no bigint column can hold reached the driver, which refused to
    send it, and the request failed with 500."""
    member = bearer((await register_member(client))["accessToken"])
    admin = await admin_headers(db, settings)
    partner = await make_partner(client, admin)
    key = bearer(await issue_key(client, admin, partner["code"], ["redeem"]))
    huge = 2**63
    for template, name, headers in (
            ("/v1/me/mile-purchases/{purchase_id}", "purchase_id", member),
            ("/v1/me/status-purchases/{purchase_id}", "purchase_id", member),
            ("/v1/partner/holds/{hold_id}", "hold_id", key),
            ("/v1/partner/redemptions/{redemption_id}", "redemption_id", key),
            ("/v1/staff/adjustments/{adjustment_id}", "adjustment_id", admin)):
        path = template.replace("{" + name + "}", str(huge))
        assert_problem(await client.get(path, headers=headers), 422, "validation_error")
        [parameter] = [p for p in DOCUMENT["paths"][template]["get"]["parameters"]
                       if p["name"] == name]
        assert parameter["schema"]["maximum"] == MAX_ID < huge, template
