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

from lms.api.problems import PROBLEM_JSON
from lms.settings import PROJECT_ROOT
from tests.api.test_problems import assert_problem
from tests.factories import bearer, register_member

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
