"""Member endpoints: enrolment, sign-in, profile, balance, statement."""

from __future__ import annotations

from typing import Annotated, Any, cast

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, QueryParameter
from litestar.types import HTTPScope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import (
    EmailTaken,
    InvalidBirthDate,
    InvalidCursor,
    InvalidEmail,
    InvalidName,
    InvalidPhone,
    InvalidTimezone,
    MemberNotFound,
    WeakPassword,
)
from lms.accounts.models import Member
from lms.accounts.schemas import (
    BalanceResponse,
    MemberOut,
    RegisterRequest,
    StatementPage,
)
from lms.accounts.service import (
    MemberService,
    balance_from_page,
    member_balance,
    token_balance_page,
)
from lms.api.http import NO_COMPRESSION
from lms.api.idempotency import (
    IDEMPOTENCY_PROBLEMS,
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    idempotent,
)
from lms.api.openapi import problems
from lms.auth.guards import MEMBERS, check_role, current_principal, member_only
from lms.auth.middleware import authenticate, bearer_token
from lms.auth.principal import Principal
from lms.auth.routes import token_response
from lms.auth.schemas import TokenRequest, TokenResponse
from lms.auth.service import AccountDisabled, InvalidCredentials, SignInThrottled
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.ledger.types import Unit
from lms.partners.keys import is_api_key


def member_service(session: AsyncSession, state: State) -> MemberService:
    return MemberService(session, state.settings, state.system_accounts)


def member_out(m: Member) -> MemberOut:
    return MemberOut(id=m.id, card_number=m.card_number, email=m.email,
                     first_name=m.first_name, last_name=m.last_name, phone=m.phone,
                     birth_date=m.birth_date, locale=m.locale, timezone=m.timezone,
                     status=m.status, tier=m.tier, joined_at=m.joined_at)


class MemberAuthController(Controller):
    path = "/auth"
    tags = ["members"]
    security = [{}]

    @post("/register", operation_id="registerMember", status_code=201,
          summary="Enrol a new member",
          description=("Answers with the new member; sign in with `POST /v1/auth/token` "
                       "for an access token. The answer holds no secret, so a retry with "
                       "the same Idempotency-Key can safely replay it."),
          response_headers=REPLAYED_HEADER,
          responses=problems(ValidationFailed, InvalidEmail, WeakPassword, InvalidName,
                             InvalidPhone, InvalidBirthDate, InvalidTimezone, EmailTaken,
                             *IDEMPOTENCY_PROBLEMS))
    async def register(self, request: Request[Any, Any, Any], data: JSONBody[RegisterRequest],
                       state: State, idempotency_key: IdempotencyKeyHeader = None
                       ) -> Response[MemberOut]:
        async def enrol(session: AsyncSession) -> MemberOut:
            return member_out((await member_service(session, state).register(data)).member)

        return await idempotent(request, None, state.db, enrol, key=idempotency_key,
                                secret_fields={"password"})

    @post("/token", operation_id="memberToken", status_code=200,
          summary="Sign a member in with e-mail and password",
          description=("After 5 failed attempts for one e-mail, every attempt (even with the "
                       "right password) is refused with 429 until Retry-After has passed."),
          responses=problems(InvalidCredentials, SignInThrottled, AccountDisabled,
                             ValidationFailed))
    async def token(self, data: JSONBody[TokenRequest], state: State) -> TokenResponse:
        attempt = await state.db.transaction(
            lambda s: member_service(s, state).sign_in(data.email, data.password))
        return token_response(attempt)


class MyBalanceController(Controller):
    """The API's most frequent call authenticates by itself, in the statement that reads the
    page (lms.accounts.service.token_balance_page, statements shared by concurrent requests:
    lms.accounts.balance_reads): the bearer middleware's lookup would be a round trip of its
    own. Hence no guard here and opt exclude_from_auth; check_role answers
    exactly what the member_only guard would (401, 403)."""

    path = "/me"
    tags = ["members"]

    @get("/balance", operation_id="getMyBalance",
         summary="Posted, held and available per unit, and the next miles to expire",
         responses=problems(Unauthorized, Forbidden, MemberNotFound),
         opt={"exclude_from_auth": True, NO_COMPRESSION: True})
    async def balance(self, request: Request[Any, Any, Any], state: State) -> BalanceResponse:
        token = bearer_token(request.headers.get("authorization", ""))
        if token is None or is_api_key(token):
            # Not a member's token: authenticated as on every other route (a partner's key
            # is counted against its rate limit), then refused.
            user = None if token is None else await authenticate(request, token)
            member = check_role(user, MEMBERS)
            result: BalanceResponse = await state.db.autocommit(
                lambda conn: member_balance(conn, member.id))
            return result
        read = cast(dict[str, Any], request.scope).get(BALANCE_READ)
        if read is None:
            read = await read_balance(state, token)
        if isinstance(read, BaseException):
            raise read
        caller, page = read
        check_role(caller, MEMBERS)
        return balance_from_page(page)


# What answer_balance read, left in the scope for the route when it did not answer itself.
BALANCE_READ = "lms.balance_read"
BALANCE_PATH = "/v1/me/balance"
JSON_HEADERS = ((b"content-type", b"application/json"),)
_encode = msgspec.json.Encoder().encode


async def read_balance(state: State, token: str
                       ) -> tuple[Principal | None, asyncpg.Record | None] | Exception:
    try:
        return await token_balance_page(state.balance_reads, state.db, token)
    except Exception as exc:
        return exc


async def answer_balance(state: State, scope: HTTPScope, send: Send) -> bool:
    """GET /v1/me/balance with a member's live token, answered before Litestar routes the
    request (lms.app.LmsApp): the same body and headers as the route's, without the routing,
    the handler's parameters and the response object, which cost a third of the API's CPU
    per read. Anything else (no bearer token, an API key, another role, a failure) is left
    to the route (False), with the read already made in the scope: it answers as before,
    and no request is read twice."""
    authorization = next((value for name, value in scope["headers"]
                          if name == b"authorization"), b"")
    token = bearer_token(authorization.decode("latin-1"))
    if token is None or is_api_key(token):
        return False
    read = await read_balance(state, token)
    if isinstance(read, BaseException):
        cast(dict[str, Any], scope)[BALANCE_READ] = read
        return False
    caller, page = read
    if (caller is None or caller.role not in MEMBERS or page is None
            or page["card_number"] is None or page["units"] is None):
        cast(dict[str, Any], scope)[BALANCE_READ] = read
        return False
    body = _encode(balance_from_page(page))
    await send({"type": "http.response.start", "status": 200,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return True


class MeController(Controller):
    path = "/me"
    tags = ["members"]
    guards = [member_only]

    @get("", operation_id="getMe", summary="The signed-in member's profile",
         responses=problems(Unauthorized, Forbidden, MemberNotFound))
    async def me(self, request: Request[Any, Any, Any], state: State) -> MemberOut:
        principal = current_principal(request)
        member = await state.db.transaction(
            lambda s: member_service(s, state).get(principal.id))
        return member_out(member)

    @get("/statement", operation_id="getMyStatement",
         summary="Statement lines, newest first, with cursor pagination",
         responses=problems(Unauthorized, Forbidden, MemberNotFound, ValidationFailed,
                            InvalidCursor))
    async def statement(
        self, request: Request[Any, Any, Any], state: State,
        cursor: Annotated[str | None, QueryParameter(
            max_length=200, description="nextCursor of the previous page")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        unit: Annotated[Unit, QueryParameter()] = Unit.MILES,
    ) -> StatementPage:
        principal = current_principal(request)
        page: StatementPage = await state.db.transaction(
            lambda s: member_service(s, state).statement(principal.id, unit=unit,
                                                         cursor=cursor, limit=limit))
        return page
