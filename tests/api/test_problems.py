"""Every error, the framework's own included, is application/problem+json with a stable code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import Litestar, get

from lms.api.problems import EXCEPTION_HANDLERS, PROBLEM_JSON, TYPE_BASE
from tests.factories import asgi_client, bearer, register_member, registration


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == TYPE_BASE + code
    assert body["title"]
    assert "Traceback" not in response.text
    return body


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/nowhere"), 404, "not_found")
    assert body["instance"] == "/v1/nowhere"


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/v1/auth/register"), 405, "method_not_allowed")


@pytest.mark.parametrize("content", [b"{bad", b"", b"email=a@b.c"])
async def test_malformed_json_body_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/v1/auth/register", content=content,
                                 headers={"content-type": "application/json"})
    if content == b"":
        # An empty body is a missing body: the framework reports it as a field error.
        assert_problem(response, 422, "validation_error")
    else:
        assert_problem(response, 400, "malformed_body")


async def test_wrong_type_is_422_with_the_field(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/v1/auth/register", json=registration(email=5)),
                          422, "validation_error")
    assert body["errors"][0]["key"] == "email"


async def test_not_an_object_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/v1/auth/register", json=[1, 2]), 422, "validation_error")


async def test_missing_field_is_422(client: httpx.AsyncClient) -> None:
    body = registration()
    del body["lastName"]
    problem = assert_problem(await client.post("/v1/auth/register", json=body),
                             422, "validation_error")
    assert "lastName" in str(problem["errors"])


async def test_unknown_field_is_422(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.post("/v1/auth/register",
                                               json=registration(isAdmin=True)),
                             422, "validation_error")
    assert "isAdmin" in problem["errors"][0]["message"]


async def test_constraint_violation_is_422(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.post("/v1/auth/register",
                                               json=registration(firstName="")),
                             422, "validation_error")
    assert problem["errors"][0]["key"] == "firstName"


async def test_bad_query_parameter_is_422_without_echoing_the_url(
        client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    response = await client.get("/v1/me/statement?limit=abc&secret=x",
                                headers=bearer(member["accessToken"]))
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["key"] == "limit"
    assert "secret" not in response.text


async def test_missing_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_unknown_token_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/me", headers=bearer("not-a-token")),
                   401, "unauthorized")


async def test_unexpected_error_is_500_without_details() -> None:
    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS, debug=False)
    async with asgi_client(app) as c:
        response = await c.get("/boom")
    assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text


async def test_body_too_large_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/register", content=b"x" * (2 * 1024 * 1024 + 1),
                                 headers={"content-type": "application/json"})
    assert_problem(response, 413, "payload_too_large")
