"""Idempotent mutating routes: the one place where HTTP meets lms.idempotency.

A route opts in by taking the header and handing it over::

    @post("/things", response_headers=REPLAYED_HEADER,
          responses=problems(..., *IDEMPOTENCY_PROBLEMS))
    async def create(self, request: Request[Any, Any, Any], data: JSONBody[NewThing],
                     state: State, idempotency_key: IdempotencyKeyHeader = None
                     ) -> Response[Thing]:
        async def work(session: AsyncSession) -> Thing:
            return thing_out(await ThingService(session).create(data))
        return await idempotent(request, current_principal(request), state.db, work,
                                key=idempotency_key)

The key is scoped per principal (``member:42``, ``staff:7``, ``partner:3``); calls without a
principal (enrolment) share the scope ``anonymous``: there a replay needs the same key and
the same request, so it only helps whoever sent that request.

The request hash covers the method, the path with its query string and the body in canonical
form (JSON re-encoded with sorted keys, so key order and whitespace do not matter). Body
fields named in ``secret_fields`` (passwords) are left out of the hash: a fast hash of a
password must never be stored. A retry that differs only in such a field replays the first
answer, which is why an answer stored here must not carry a secret either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter
from litestar.serialization import encode_json
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal
from lms.db import Database, RawConnection
from lms.idempotency.errors import (
    IdempotencyKeyInvalid,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotencyRequestUnfinished,
)
from lms.idempotency.service import (
    IdempotencyService,
    StoredAnswer,
    request_hash,
    sql_refusal,
    validate_key,
)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
ANONYMOUS = "anonymous"

# The key's rules are checked by ``idempotent`` (one stable problem code), not here.
IdempotencyKeyHeader = Annotated[str | None, HeaderParameter(
    name=HEADER, required=False,
    description=("A unique key for this operation (1-255 printable ASCII characters, a UUID "
                 "is a good choice). Retrying with the same key and the same request answers "
                 "with the first result and the header `Idempotency-Replayed: true`; the same "
                 "key with a different request is refused with 409 `idempotency_key_reused`. "
                 "Errors are not stored: after one, the key can be used again."),
)]
REPLAYED_HEADER = [ResponseHeader(
    name=REPLAYED, value="true", documentation_only=True, required=False,
    description="`true` when this is the stored answer to an earlier request with the same "
                "Idempotency-Key",
)]
IDEMPOTENCY_PROBLEMS = (IdempotencyKeyInvalid, IdempotencyKeyReused,
                        IdempotencyRequestUnfinished)
IDEMPOTENCY_REQUIRED_PROBLEMS = (*IDEMPOTENCY_PROBLEMS, IdempotencyKeyRequired)

# A write done whole by one SQL function (``idempotent_call``): called with the connection, the
# key's owner, the key and the request's fingerprint, it returns the function's one row.
SqlCall = Callable[[RawConnection, str, str, str], Awaitable[asyncpg.Record]]

# The arguments of a write done whole by one SQL function that is sent with others
# (``idempotent_grouped``): given the key's owner, the key and the request's fingerprint, its
# whole argument list, those three first.
SqlArguments = Callable[[str, str, str], Awaitable[Sequence[Any]]]

# What a unit of work runs on: a SQLAlchemy session or a bare asyncpg connection.
C = TypeVar("C", AsyncSession, RawConnection)


def _canonical_body(raw: bytes, secret_fields: Collection[str]) -> bytes:
    if not raw:
        return b""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw
    if isinstance(value, dict) and secret_fields:
        value = {k: v for k, v in value.items() if k not in secret_fields}
    return msgspec.json.encode(value, order="sorted")


async def fingerprint(request: Request[Any, Any, Any],
                      secret_fields: Collection[str] = ()) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return request_hash(request.method.encode(), target.encode(),
                        _canonical_body(await request.body(), secret_fields))


def _answer(stored: StoredAnswer, *, replayed: bool) -> Response[Any]:
    return Response(content=stored.body, status_code=stored.status_code,
                    media_type="application/json",
                    headers={REPLAYED: "true"} if replayed else None)


async def idempotent(
    request: Request[Any, Any, Any],
    principal: Principal | None,
    db: Database,
    work: Callable[[AsyncSession], Awaitable[Any]],
    *,
    key: str | None,
    status_code: int = 201,
    required: bool = False,
    secret_fields: Collection[str] = (),
) -> Response[Any]:
    """Run ``work`` as one unit of work under the request's Idempotency-Key, if any.

    ``work`` returns the response body (a msgspec Struct); it runs at most once per key and
    principal. ``key`` is the route's ``IdempotencyKeyHeader`` parameter, keyword-only and
    without a default so that a route cannot forget to pass it. Without a key the work simply
    runs, unless ``required``.
    """
    return await _idempotent(request, principal, db.transaction, work, key=key,
                             status_code=status_code, required=required,
                             secret_fields=secret_fields)


async def idempotent_call(
    request: Request[Any, Any, Any],
    principal: Principal | None,
    db: Database,
    call: SqlCall,
    *,
    key: str | None,
    refusal: Callable[[asyncpg.PostgresError], Exception | None],
) -> Response[Any]:
    """The key required, for a write done whole by one SQL function: one round trip and one
    commit in all (``Database.autocommit``: a lone statement is atomic).

    The function takes the key's owner, the key and the request's fingerprint as its first
    arguments, claims the key with ``idempotency_claim()`` before its work and stores its
    answer with ``idempotency_answer()`` after (migration 0022), and returns one row:
    ``status_code``, ``response_body`` (the JSON it answered, or the stored one) and
    ``replayed``. A business refusal is an error with a SQLSTATE of its own, which
    ``refusal`` turns into the API's problem (None: not a refusal, raised as it is); the
    error rolls the claim back with the rest, so errors are never stored.
    """
    if key is None:
        raise IdempotencyKeyRequired()
    scope, key, request_fingerprint = await _scoped(request, principal, key, ())

    async def once(conn: RawConnection) -> asyncpg.Record:
        return await call(conn, scope, key, request_fingerprint)

    return await _answered(db.autocommit(once), refusal)


async def idempotent_grouped(
    request: Request[Any, Any, Any],
    principal: Principal | None,
    db: Database,
    function: str,
    arguments: SqlArguments,
    *,
    key: str | None,
    refusal: Callable[[asyncpg.PostgresError], Exception | None],
    shared: Sequence[int] = (),
) -> Response[Any]:
    """As ``idempotent_call``, for a function with a ``_batch`` wrapper (migration 0026):
    the call goes with the others of ``function`` that arrive meanwhile, in one transaction
    (``Database.call_grouped``, lms.group_commit), its own refusals and answer unchanged."""
    if key is None:
        raise IdempotencyKeyRequired()
    scope, key, request_fingerprint = await _scoped(request, principal, key, ())
    args = await arguments(scope, key, request_fingerprint)
    return await _answered(db.call_grouped(function, args, shared=shared), refusal)


async def _answered(call: Awaitable[asyncpg.Record],
                    refusal: Callable[[asyncpg.PostgresError], Exception | None]
                    ) -> Response[Any]:
    """The response of a write function's row, or the problem of its refusal."""
    try:
        row = await call
    except asyncpg.PostgresError as exc:
        problem = sql_refusal(exc) or refusal(exc)
        if problem is None:
            raise
        raise problem from exc
    return _answer(StoredAnswer(row["status_code"], bytes(row["response_body"])),
                   replayed=row["replayed"])


async def _scoped(request: Request[Any, Any, Any], principal: Principal | None, key: str,
                  secret_fields: Collection[str]) -> tuple[str, str, str]:
    """The key's owner (its principal, or anonymous), the key checked, and the request's
    fingerprint: what every idempotent unit of work claims the key with."""
    scope = principal.key if principal is not None else ANONYMOUS
    return scope, validate_key(key), await fingerprint(request, secret_fields)


async def _idempotent(
    request: Request[Any, Any, Any],
    principal: Principal | None,
    run: Callable[[Callable[[C], Awaitable[Any]]], Awaitable[Any]],
    work: Callable[[C], Awaitable[Any]],
    *,
    key: str | None,
    status_code: int,
    required: bool,
    secret_fields: Collection[str],
) -> Response[Any]:
    if key is None:
        if required:
            raise IdempotencyKeyRequired()
        body = await run(work)
        return _answer(StoredAnswer(status_code, encode_json(body)), replayed=False)

    scope, key, request_fingerprint = await _scoped(request, principal, key, secret_fields)

    async def unit(conn: C) -> tuple[StoredAnswer, bool]:
        keys = IdempotencyService(conn)
        earlier = await keys.claim(scope, key, request_fingerprint)
        if earlier is not None:
            return earlier, True
        answer = StoredAnswer(status_code, encode_json(await work(conn)))
        await keys.complete(scope, key, answer)
        return answer, False

    answer, replayed = await run(unit)
    return _answer(answer, replayed=replayed)
