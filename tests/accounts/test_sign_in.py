"""Sign-in, throttling, sign-out, and which tokens reach which endpoints."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.auth.models import AccessToken, LoginFailure
from lms.auth.service import AuthService
from lms.db import Database
from lms.settings import Settings
from tests.factories import bearer, register_member, unique_email

STAFF_PASSWORD = "staff-password-1234"


async def sign_in(client: httpx.AsyncClient, email: str, password: str,
                  path: str = "/v1/auth/token") -> httpx.Response:
    return await client.post(path, json={"email": email, "password": password})


async def failures(db: Database, subject: str) -> int:
    async def count(session: AsyncSession) -> int:
        return int((await session.execute(select(func.count()).select_from(LoginFailure)
                                          .where(LoginFailure.subject == subject))).scalar_one())

    return await db.transaction(count)


async def make_staff(db: Database, settings: Settings, role: str = "agent") -> str:
    email = unique_email("staff")
    await db.transaction(lambda s: AuthService(s, settings).create_staff(
        email=email, name="Sam Agent", role=role, password=STAFF_PASSWORD))
    return email


async def test_sign_in_with_any_case_of_the_email(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    response = await sign_in(client, member["member"]["email"].upper(), member["password"])
    assert response.status_code == 200
    body = response.json()
    assert body["tokenType"] == "bearer"
    me = await client.get("/v1/me", headers=bearer(body["accessToken"]))
    assert me.json()["id"] == member["member"]["id"]


async def test_wrong_password_and_unknown_email_look_the_same(
        client: httpx.AsyncClient, db: Database) -> None:
    member = await register_member(client)
    wrong = await sign_in(client, member["member"]["email"], "not the password")
    unknown = await sign_in(client, unique_email(), "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"
    assert wrong.json()["title"] == unknown.json()["title"]
    # The failure was committed although the request failed.
    assert await failures(db, "member:" + member["member"]["email"]) == 1


async def test_five_failures_throttle_even_the_right_password(
        client: httpx.AsyncClient, db: Database) -> None:
    member = await register_member(client)
    email = member["member"]["email"]
    for _ in range(5):
        assert (await sign_in(client, email, "wrong password!")).status_code == 401
    for password in ("wrong password!", member["password"]):
        response = await sign_in(client, email, password)
        assert response.status_code == 429
        assert response.json()["code"] == "sign_in_throttled"
        assert 1 <= int(response.headers["retry-after"]) <= 15 * 60 + 1
    # Refusals while throttled are not counted again.
    assert await failures(db, "member:" + email) == 5


async def test_throttling_is_per_email(client: httpx.AsyncClient) -> None:
    victim = await register_member(client)
    other = await register_member(client)
    for _ in range(5):
        await sign_in(client, victim["member"]["email"], "wrong password!")
    assert (await sign_in(client, other["member"]["email"], other["password"])
            ).status_code == 200


async def test_success_clears_earlier_failures(client: httpx.AsyncClient,
                                               db: Database) -> None:
    member = await register_member(client)
    email = member["member"]["email"]
    for _ in range(4):
        await sign_in(client, email, "wrong password!")
    assert (await sign_in(client, email, member["password"])).status_code == 200
    assert await failures(db, "member:" + email) == 0


async def test_closed_member_cannot_sign_in(client: httpx.AsyncClient, db: Database) -> None:
    member = await register_member(client)

    async def close(session: AsyncSession) -> None:
        await session.execute(update(Member).where(Member.id == member["member"]["id"])
                              .values(status="closed"))

    await db.transaction(close)
    response = await sign_in(client, member["member"]["email"], member["password"])
    assert response.status_code == 403
    assert response.json()["code"] == "account_disabled"
    wrong = await sign_in(client, member["member"]["email"], "wrong password!")
    assert wrong.json()["code"] == "invalid_credentials"


async def test_logout_revokes_the_token(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    headers = bearer(member["accessToken"])
    assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204
    after = await client.get("/v1/me", headers=headers)
    assert after.status_code == 401
    assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 401


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/auth/logout")).status_code == 401


async def test_staff_sign_in_and_profile(client: httpx.AsyncClient, db: Database,
                                         settings: Settings) -> None:
    email = await make_staff(db, settings, role="supervisor")
    response = await sign_in(client, email, STAFF_PASSWORD, "/v1/staff/auth/token")
    assert response.status_code == 200
    me = await client.get("/v1/staff/me", headers=bearer(response.json()["accessToken"]))
    assert me.status_code == 200
    assert me.json()["role"] == "supervisor"
    assert me.json()["email"] == email


async def test_staff_sign_in_is_throttled_too(client: httpx.AsyncClient, db: Database,
                                              settings: Settings) -> None:
    email = await make_staff(db, settings)
    for _ in range(5):
        await sign_in(client, email, "wrong password!", "/v1/staff/auth/token")
    response = await sign_in(client, email, STAFF_PASSWORD, "/v1/staff/auth/token")
    assert response.status_code == 429
    assert response.json()["code"] == "sign_in_throttled"


async def test_member_and_staff_tokens_stay_on_their_side(
        client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    member = await register_member(client)
    staff_email = await make_staff(db, settings)
    staff_token = (await sign_in(client, staff_email, STAFF_PASSWORD,
                                 "/v1/staff/auth/token")).json()["accessToken"]

    refused = await client.get("/v1/staff/me", headers=bearer(member["accessToken"]))
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    for path in ("/v1/me", "/v1/me/balance", "/v1/me/statement"):
        response = await client.get(path, headers=bearer(staff_token))
        assert response.status_code == 403, path
        assert response.json()["code"] == "forbidden"


async def test_member_credentials_do_not_sign_staff_in(client: httpx.AsyncClient) -> None:
    member = await register_member(client)
    response = await sign_in(client, member["member"]["email"], member["password"],
                             "/v1/staff/auth/token")
    assert response.status_code == 401


async def test_tokens_are_stored_only_as_hashes(client: httpx.AsyncClient,
                                                db: Database) -> None:
    member = await register_member(client)

    async def stored(session: AsyncSession) -> list[str]:
        return list((await session.execute(select(AccessToken.token_hash).where(
            AccessToken.principal_id == member["member"]["id"],
            AccessToken.principal_type == "member"))).scalars())

    hashes = await db.transaction(stored)
    assert member["accessToken"] not in hashes
    assert len(hashes) == 1


async def test_garbage_sign_in_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/token", json={"email": "x@y.z"})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_parallel_guesses_get_no_more_than_five_tries(
        client: httpx.AsyncClient, db: Database) -> None:
    member = await register_member(client)
    email = member["member"]["email"]
    answers = await asyncio.gather(*[sign_in(client, email, f"guess number {i}")
                                     for i in range(10)])
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 5
    assert await failures(db, "member:" + email) == 5
