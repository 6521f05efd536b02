"""``idempotent_call``: a write done whole by one SQL function, which claims its key with
idempotency_claim() and stores its answer with idempotency_answer() (migration 0022), on a
small app of its own over the real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar, Request, Response, post
from litestar.params import JSONBody

from lms.api.idempotency import IdempotencyKeyHeader, idempotent_call
from lms.api.problems import EXCEPTION_HANDLERS
from lms.auth.principal import Principal, Role
from lms.db import Database, RawConnection
from lms.errors import Conflict
from tests.factories import asgi_client

TOPIC = "test.idempotent_call"

# The shape of an operation's function: claim, work (an outbox row, then a pause that lets a
# concurrent duplicate reach the claim while this one is open), a refusal by SQLSTATE, answer.
FUNCTION = f"""
CREATE OR REPLACE FUNCTION test_idempotent_thing(
    p_principal text, p_key text, p_request_hash text, p_marker text, p_fail boolean,
    OUT status_code integer, OUT response_body bytea, OUT replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
  claim record;
  runs bigint;
BEGIN
  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);
  IF NOT claim.claimed THEN
    status_code := claim.status_code; response_body := claim.response_body;
    replayed := true;
    RETURN;
  END IF;
  INSERT INTO outbox_events (topic, payload)
  VALUES ('{TOPIC}', jsonb_build_object('marker', p_marker));
  PERFORM pg_sleep(0.2);
  IF p_fail THEN
    RAISE EXCEPTION 'refused' USING ERRCODE = 'TS001';
  END IF;
  SELECT count(*) INTO runs FROM outbox_events
   WHERE topic = '{TOPIC}' AND payload->>'marker' = p_marker;
  status_code := 201;
  response_body := convert_to(json_build_object('marker', p_marker, 'runs', runs)::text,
                              'UTF8');
  replayed := false;
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
END $$"""


class Thing(msgspec.Struct):
    marker: str
    fail: bool = False


class Refused(Conflict):
    code = "refused"


def refusal(exc: asyncpg.PostgresError) -> Exception | None:
    return Refused() if getattr(exc, "sqlstate", None) == "TS001" else None


def helper_app(db: Database) -> Litestar:
    @post("/things")
    async def things(request: Request[Any, Any, Any], data: JSONBody[Thing],
                     idempotency_key: IdempotencyKeyHeader = None) -> Response[Any]:
        who = request.headers.get("x-member", "1")

        async def call(conn: RawConnection, scope: str, key: str, fingerprint: str
                       ) -> asyncpg.Record:
            row: asyncpg.Record | None = await conn.fetchrow(
                "SELECT * FROM test_idempotent_thing($1, $2, $3, $4, $5)",
                scope, key, fingerprint, data.marker, data.fail)
            assert row is not None
            return row

        return await idempotent_call(request, Principal("member", int(who), Role.MEMBER), db,
                                     call, key=idempotency_key, refusal=refusal)

    return Litestar([things], exception_handlers=EXCEPTION_HANDLERS)


@pytest.fixture(scope="module")
async def function(db: Database) -> AsyncIterator[None]:
    await db.autocommit(lambda conn: conn.execute(FUNCTION))
    yield
    await db.autocommit(lambda conn: conn.execute(
        "DROP FUNCTION test_idempotent_thing(text, text, text, text, boolean)"))


@pytest.fixture
async def api(db: Database, function: None) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(helper_app(db)) as c:
        yield c


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def runs(db: Database, marker: str) -> int:
    count: int = await db.autocommit(lambda conn: conn.fetchval(
        "SELECT count(*) FROM outbox_events WHERE topic = $1 AND payload->>'marker' = $2",
        TOPIC, marker))
    return count


async def test_the_key_is_required(api: httpx.AsyncClient, db: Database) -> None:
    marker = uuid.uuid4().hex
    response = await api.post("/things", json={"marker": marker})
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert await runs(db, marker) == 0


async def test_a_replay_answers_the_stored_bytes_without_running_again(
        api: httpx.AsyncClient, db: Database) -> None:
    marker, headers = uuid.uuid4().hex, key()
    first = await api.post("/things", json={"marker": marker}, headers=headers)
    second = await api.post("/things", json={"marker": marker}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == {"marker": marker, "runs": 1}
    assert second.content == first.content
    assert second.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert await runs(db, marker) == 1


async def test_the_same_key_with_another_request_is_refused(api: httpx.AsyncClient,
                                                             db: Database) -> None:
    marker, headers = uuid.uuid4().hex, key()
    assert (await api.post("/things", json={"marker": marker}, headers=headers)
            ).status_code == 201
    other = await api.post("/things", json={"marker": marker + "x"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert await runs(db, marker + "x") == 0


async def test_the_key_is_scoped_by_its_owner(api: httpx.AsyncClient, db: Database) -> None:
    marker, headers = uuid.uuid4().hex, key()
    for member in ("1", "2"):
        response = await api.post("/things", json={"marker": marker},
                                   headers=headers | {"x-member": member})
        assert "idempotency-replayed" not in response.headers
    assert await runs(db, marker) == 2


async def test_a_refusal_is_a_problem_and_is_not_stored(api: httpx.AsyncClient,
                                                        db: Database) -> None:
    marker, headers = uuid.uuid4().hex, key()
    refused = await api.post("/things", json={"marker": marker, "fail": True},
                             headers=headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "refused"
    assert await runs(db, marker) == 0
    # The refusal rolled the claim back: the key is free for a corrected request.
    retry = await api.post("/things", json={"marker": marker}, headers=headers)
    assert retry.status_code == 201
    assert "idempotency-replayed" not in retry.headers


async def test_concurrent_duplicates_run_once(api: httpx.AsyncClient, db: Database) -> None:
    marker, headers = uuid.uuid4().hex, key()
    answers = await asyncio.gather(*(api.post("/things", json={"marker": marker},
                                              headers=headers) for _ in range(5)))
    assert [a.status_code for a in answers] == [201] * 5
    assert len({a.content for a in answers}) == 1
    assert sorted(a.headers.get("idempotency-replayed", "") for a in answers) == [
        "", "true", "true", "true", "true"]
    assert await runs(db, marker) == 1
