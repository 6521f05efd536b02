"""Enrolment: validation with stable codes, nothing written on refusal, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.db import Database
from lms.idempotency.models import IdempotencyKey
from tests.factories import registration, unique_email


async def members_with(db: Database, email: str) -> int:
    async def count(session: AsyncSession) -> int:
        return int((await session.execute(select(func.count()).select_from(Member).where(
            func.lower(Member.email) == email.lower()))).scalar_one())

    return await db.transaction(count)


async def test_register_answers_the_member(client: httpx.AsyncClient) -> None:
    body = registration(email="  Grace.Hopper-" + uuid.uuid4().hex[:8] + "@Example.COM ",
                        phone="020 7946 0958", locale="en-GB", timezone="Europe/London",
                        firstName="  Grace ", lastName="Hopper")
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    member = response.json()
    assert member["email"] == body["email"].strip().lower()
    assert member["phone"] == "+442079460958"
    assert member["firstName"] == "Grace"
    assert member["cardNumber"].isdigit()
    assert member["status"] == "active"
    assert "password" not in response.text.lower()
    assert "accessToken" not in member


TODAY = date.today()


@pytest.mark.parametrize(("overrides", "status", "code", "field"), [
    ({"email": "not-an-email"}, 422, "invalid_email", "email"),
    ({"email": "a@b"}, 422, "invalid_email", "email"),
    ({"password": "short"}, 422, "weak_password", "password"),
    ({"password": "aaaaaaaaaaaaaaaa"}, 422, "weak_password", "password"),
    ({"password": "password123"}, 422, "weak_password", "password"),
    ({"firstName": "   "}, 422, "invalid_name", "firstName"),
    ({"lastName": "Love\u0000lace"}, 422, "invalid_name", "lastName"),
    ({"phone": "12"}, 422, "invalid_phone", "phone"),
    ({"phone": "+44 20 79"}, 422, "invalid_phone", "phone"),
    ({"phone": "020 7946 0958", "locale": "en"}, 422, "invalid_phone", "phone"),
    ({"birthDate": (TODAY + timedelta(days=1)).isoformat()}, 422, "invalid_birth_date",
     "birthDate"),
    ({"birthDate": "1850-01-01"}, 422, "invalid_birth_date", "birthDate"),
    ({"birthDate": "1990-02-30"}, 422, "validation_error", "birthDate"),
    ({"timezone": "Mars/Olympus"}, 422, "invalid_timezone", "timezone"),
    ({"timezone": "../../etc/passwd"}, 422, "invalid_timezone", "timezone"),
    ({"locale": "english"}, 422, "validation_error", "locale"),
    ({"locale": "EN-gb"}, 422, "validation_error", "locale"),
    ({"unknownField": 1}, 422, "validation_error", None),
    ({"firstName": "x" * 101}, 422, "validation_error", "firstName"),
    ({"password": "p" * 201}, 422, "validation_error", "password"),
])
async def test_invalid_registration_is_refused_and_writes_nothing(
        client: httpx.AsyncClient, db: Database, overrides: dict[str, Any], status: int,
        code: str, field: str | None) -> None:
    body = registration(**overrides)
    if "email" not in overrides:
        body["email"] = unique_email()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    response = await client.post("/v1/auth/register", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    if field:
        assert field in [e["key"] for e in problem["errors"]]
    if "@" in body["email"] and "." in body["email"].split("@")[1]:
        assert await members_with(db, body["email"]) == 0

    async def key_rows(session: AsyncSession) -> int:
        return int((await session.execute(select(func.count()).select_from(IdempotencyKey)
                                          .where(IdempotencyKey.key == headers[
                                              "Idempotency-Key"]))).scalar_one())

    assert await db.transaction(key_rows) == 0


async def test_duplicate_email_in_other_case_is_409(client: httpx.AsyncClient,
                                                    db: Database) -> None:
    email = unique_email()
    assert (await client.post("/v1/auth/register", json=registration(email=email))
            ).status_code == 201
    again = await client.post("/v1/auth/register", json=registration(email=email.upper()))
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"
    assert await members_with(db, email) == 1


async def test_concurrent_registrations_of_one_email_create_one_member(
        client: httpx.AsyncClient, db: Database) -> None:
    email = unique_email()
    answers = await asyncio.gather(*[
        client.post("/v1/auth/register", json=registration(email=email)) for _ in range(4)])
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"email_taken"}
    assert await members_with(db, email) == 1


async def test_concurrent_retries_with_one_key_create_one_member(
        client: httpx.AsyncClient, db: Database) -> None:
    body = registration()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first, second = await asyncio.gather(
        client.post("/v1/auth/register", json=body, headers=headers),
        client.post("/v1/auth/register", json=body, headers=headers))
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert sorted(r.headers.get("idempotency-replayed", "") for r in (first, second)) == [
        "", "true"]
    assert await members_with(db, body["email"]) == 1


async def test_retry_with_one_key_replays_and_other_body_is_409(
        client: httpx.AsyncClient, db: Database) -> None:
    body = registration()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/v1/auth/register", json=body, headers=headers)
    replay = await client.post("/v1/auth/register", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotency-replayed"] == "true"
    assert replay.content == first.content

    other_body = registration()
    other = await client.post("/v1/auth/register", json=other_body, headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert await members_with(db, other_body["email"]) == 0


async def test_idempotency_never_stores_the_password(client: httpx.AsyncClient,
                                                     db: Database) -> None:
    body = registration(password="unguessable-" + uuid.uuid4().hex)
    key = str(uuid.uuid4())
    assert (await client.post("/v1/auth/register", json=body,
                              headers={"Idempotency-Key": key})).status_code == 201

    async def row(session: AsyncSession) -> IdempotencyKey:
        return (await session.execute(select(IdempotencyKey).where(
            IdempotencyKey.principal == "anonymous", IdempotencyKey.key == key))).scalar_one()

    stored = await db.transaction(row)
    assert body["password"].encode() not in (stored.response_body or b"")
    # The same request without the password field hashes the same: no hash of it is kept.
    replay = await client.post("/v1/auth/register",
                               json=body | {"password": "another-password-99"},
                               headers={"Idempotency-Key": key})
    assert replay.headers["idempotency-replayed"] == "true"
