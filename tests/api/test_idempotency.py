"""The idempotency helper on a small app of its own, over the real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar, Request, Response, post
from litestar.params import JSONBody
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.api.idempotency import IdempotencyKeyHeader, idempotent
from lms.api.problems import EXCEPTION_HANDLERS
from lms.auth.principal import Principal, Role
from lms.db import Database
from lms.errors import Conflict
from lms.idempotency.models import IdempotencyKey
from lms.idempotency.service import request_hash
from lms.outbox.service import emit
from tests.factories import asgi_client

TOPIC = "test.idempotency"


class Thing(msgspec.Struct, rename="camel"):
    marker: str
    note: str = ""
    password: str = ""
    fail: bool = False


class Made(msgspec.Struct, rename="camel"):
    marker: str
    runs: int


class Refused(Conflict):
    code = "refused"


def caller(request: Request[Any, Any, Any]) -> Principal | None:
    who = request.headers.get("x-member")
    return Principal("member", int(who), Role.MEMBER) if who else None


async def make(session: AsyncSession, data: Thing) -> Made:
    await emit(session, TOPIC, {"marker": data.marker})
    # Let a concurrent duplicate reach the key's insert while this one is still open.
    await session.execute(text("SELECT pg_sleep(0.2)"))
    if data.fail:
        raise Refused()
    return Made(marker=data.marker, runs=await runs(session, data.marker))


async def runs(session: AsyncSession, marker: str) -> int:
    return int((await session.execute(text(
        "SELECT count(*) FROM outbox_events WHERE topic = :t AND payload->>'marker' = :m"),
        {"t": TOPIC, "m": marker})).scalar_one())


def helper_app(db: Database) -> Litestar:
    @post("/things")
    async def things(request: Request[Any, Any, Any], data: JSONBody[Thing],
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[Made]:
        return await idempotent(request, caller(request), db, lambda s: make(s, data),
                                key=idempotency_key, secret_fields={"password"})

    @post("/strict")
    async def strict(request: Request[Any, Any, Any], data: JSONBody[Thing],
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[Made]:
        return await idempotent(request, caller(request), db, lambda s: make(s, data),
                                key=idempotency_key, required=True, status_code=200)

    return Litestar([things, strict], exception_handlers=EXCEPTION_HANDLERS)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(helper_app(db)) as c:
        yield c


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def marker() -> str:
    return uuid.uuid4().hex


async def count_runs(db: Database, m: str) -> int:
    return await db.transaction(lambda s: runs(s, m))


async def test_without_key_the_work_runs_each_time(api: httpx.AsyncClient, db: Database) -> None:
    m = marker()
    for expected in (1, 2):
        response = await api.post("/things", json={"marker": m})
        assert response.status_code == 201
        assert response.json()["runs"] == expected
        assert "idempotency-replayed" not in response.headers


async def test_replay_returns_the_first_answer_without_running_again(
        api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    first = await api.post("/things", json={"marker": m}, headers=headers)
    second = await api.post("/things", json={"marker": m}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert await count_runs(db, m) == 1


async def test_key_order_and_whitespace_do_not_matter(api: httpx.AsyncClient) -> None:
    m, headers = marker(), key() | {"content-type": "application/json"}
    first = await api.post("/things", content=f'{{"marker":"{m}","note":"x"}}',
                           headers=headers)
    second = await api.post("/things", content=f'{{ "note": "x",\n "marker": "{m}" }}',
                            headers=headers)
    assert second.headers["idempotency-replayed"] == "true"
    assert first.content == second.content


async def test_same_key_other_body_is_409(api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    await api.post("/things", json={"marker": m}, headers=headers)
    response = await api.post("/things", json={"marker": m, "note": "changed"},
                              headers=headers)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert await count_runs(db, m) == 1


async def test_same_key_other_path_is_409(api: httpx.AsyncClient) -> None:
    m, headers = marker(), key()
    await api.post("/things", json={"marker": m}, headers=headers)
    response = await api.post("/things?variant=2", json={"marker": m}, headers=headers)
    assert response.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_per_principal(api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    a = await api.post("/things", json={"marker": m}, headers=headers | {"x-member": "1"})
    b = await api.post("/things", json={"marker": m}, headers=headers | {"x-member": "2"})
    assert "idempotency-replayed" not in b.headers
    assert (a.json()["runs"], b.json()["runs"]) == (1, 2)


async def test_errors_are_not_stored_so_the_key_can_be_retried(
        api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    refused = await api.post("/things", json={"marker": m, "fail": True}, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "refused"
    # The refusal rolled back the key with the work: a corrected retry runs.
    retried = await api.post("/things", json={"marker": m}, headers=headers)
    assert retried.status_code == 201
    assert "idempotency-replayed" not in retried.headers
    assert await count_runs(db, m) == 1


async def test_concurrent_duplicates_run_the_work_once(
        api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    answers = await asyncio.gather(*[
        api.post("/things", json={"marker": m}, headers=headers) for _ in range(5)])
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("idempotency-replayed") == "true" for a in answers) == 4
    assert await count_runs(db, m) == 1


async def test_concurrent_duplicate_of_a_failing_request_runs_again(
        api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    failing, fine = await asyncio.gather(
        api.post("/things", json={"marker": m, "fail": True}, headers=headers),
        api.post("/things", json={"marker": m, "fail": True}, headers=headers))
    assert failing.status_code == fine.status_code == 409
    assert {failing.json()["code"], fine.json()["code"]} == {"refused"}


async def test_required_key(api: httpx.AsyncClient) -> None:
    response = await api.post("/strict", json={"marker": marker()})
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    ok = await api.post("/strict", json={"marker": marker()}, headers=key())
    assert ok.status_code == 200


@pytest.mark.parametrize("bad", ["", " ", "x" * 256, "caf\u00e9", "tab\tkey"])
async def test_invalid_key_is_400(api: httpx.AsyncClient, bad: str) -> None:
    response = await api.post("/things", json={"marker": marker()},
                              headers={b"Idempotency-Key": bad.encode("utf-8")})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "idempotency_key_invalid"


async def test_longest_key_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post("/things", json={"marker": marker()},
                              headers={"Idempotency-Key": "k" * 255})
    assert response.status_code == 201


async def test_secret_fields_are_not_hashed_and_answers_are_stored(
        api: httpx.AsyncClient, db: Database) -> None:
    m, headers = marker(), key()
    first = await api.post("/things", json={"marker": m, "password": "one"}, headers=headers)
    second = await api.post("/things", json={"marker": m, "password": "two"}, headers=headers)
    assert second.headers["idempotency-replayed"] == "true"

    async def stored(session: AsyncSession) -> IdempotencyKey:
        return (await session.execute(select(IdempotencyKey).where(
            IdempotencyKey.key == headers["Idempotency-Key"]))).scalar_one()

    row = await db.transaction(stored)
    assert row.principal == "anonymous"
    assert row.status_code == 201
    assert row.response_body == first.content
    assert b"one" not in (row.response_body or b"")


def test_request_hash_separates_parts() -> None:
    assert request_hash(b"ab", b"c") != request_hash(b"a", b"bc")


async def test_no_keys_left_behind_by_failures(db: Database) -> None:
    async def count(session: AsyncSession) -> int:
        return int((await session.execute(select(func.count()).select_from(IdempotencyKey)
                                          .where(IdempotencyKey.status_code.is_(None))
                                          )).scalar_one())

    assert await db.transaction(count) == 0
