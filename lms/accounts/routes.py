"""Member endpoints: enrolment, sign-in, profile, balance, statement."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from lms.accounts.schemas import (
    BalanceResponse,
    MemberOut,
    RegisterRequest,
    RegisterResponse,
    StatementPage,
    TokenRequest,
    TokenResponse,
)
from lms.accounts.service import EmailTaken, MemberNotFound, MemberService
from lms.api.openapi import problems
from lms.auth.guards import current_principal, member_only
from lms.auth.service import InvalidCredentials, SignInThrottled
from lms.errors import Unauthorized, ValidationFailed
from lms.ledger.types import Unit


def member_service(session: Any, state: State) -> MemberService:
    return MemberService(session, state.settings, state.system_accounts)


def member_out(m: Any) -> MemberOut:
    return MemberOut(id=m.id, card_number=m.card_number, email=m.email,
                     first_name=m.first_name, last_name=m.last_name, phone=m.phone,
                     birth_date=m.birth_date, locale=m.locale, timezone=m.timezone,
                     status=m.status, tier=m.tier, joined_at=m.joined_at)


class MemberAuthController(Controller):
    path = "/auth"
    tags = ["members"]
    security = [{}]

    @post("/register", operation_id="registerMember", status_code=201,
          summary="Enrol a new member; answers with the member and an access token",
          responses=problems(ValidationFailed, EmailTaken))
    async def register(self, data: RegisterRequest, state: State) -> RegisterResponse:
        enrolment = await state.db.transaction(
            lambda s: member_service(s, state).register(data))
        return RegisterResponse(member=member_out(enrolment.member),
                                access_token=enrolment.token, expires_at=enrolment.expires_at)

    @post("/token", operation_id="memberToken", status_code=200,
          summary="Sign a member in with e-mail and password",
          responses=problems(InvalidCredentials, SignInThrottled, ValidationFailed))
    async def token(self, data: TokenRequest, state: State) -> TokenResponse:
        # A failed attempt must be recorded even though the request fails, so the failure
        # is committed by the unit of work before the error is raised to the client.
        outcome: dict[str, Any] = {}

        async def sign_in(session: Any) -> None:
            try:
                outcome["token"] = await member_service(session, state).sign_in(
                    data.email, data.password)
            except InvalidCredentials as exc:
                outcome["error"] = exc

        await state.db.transaction(sign_in)
        if "error" in outcome:
            raise outcome["error"]
        token, expires = outcome["token"]
        return TokenResponse(access_token=token, token_type="bearer", expires_at=expires)


class MeController(Controller):
    path = "/me"
    tags = ["members"]
    guards = [member_only]

    @get("", operation_id="getMe", summary="The signed-in member's profile",
         responses=problems(Unauthorized, MemberNotFound))
    async def me(self, request: Request[Any, Any, Any], state: State) -> MemberOut:
        principal = current_principal(request)
        member = await state.db.transaction(
            lambda s: member_service(s, state).get(principal.id))
        return member_out(member)

    @get("/balance", operation_id="getMyBalance",
         summary="Posted, held and available per unit, and the next miles to expire",
         responses=problems(Unauthorized, MemberNotFound))
    async def balance(self, request: Request[Any, Any, Any], state: State) -> BalanceResponse:
        principal = current_principal(request)
        result: BalanceResponse = await state.db.transaction(
            lambda s: member_service(s, state).balance(principal.id))
        return result

    @get("/statement", operation_id="getMyStatement",
         summary="Statement lines, newest first, with cursor pagination",
         responses=problems(Unauthorized, ValidationFailed))
    async def statement(
        self, request: Request[Any, Any, Any], state: State,
        cursor: Annotated[str | None, Parameter(query="cursor", max_length=200)] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50,
        unit: Annotated[Unit, Parameter(query="unit")] = Unit.MILES,
    ) -> StatementPage:
        principal = current_principal(request)
        page: StatementPage = await state.db.transaction(
            lambda s: member_service(s, state).statement(principal.id, unit=unit,
                                                         cursor=cursor, limit=limit))
        return page
