"""Sign-out for everyone, staff sign-in and the signed-in staff user."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import JSONBody

from lms.api.openapi import problems
from lms.auth.guards import current_principal, requires, staff_any
from lms.auth.principal import STAFF_ROLES, Role
from lms.auth.schemas import StaffOut, TokenRequest, TokenResponse
from lms.auth.service import (
    AccountDisabled,
    AuthService,
    InvalidCredentials,
    SignIn,
    SignInThrottled,
    StaffNotFound,
)
from lms.errors import Forbidden, Unauthorized, ValidationFailed


def token_response(attempt: SignIn) -> TokenResponse:
    issued = attempt.token()
    return TokenResponse(access_token=issued.token, token_type="bearer",
                         expires_at=issued.expires_at)


class SessionController(Controller):
    path = "/auth"
    tags = ["auth"]
    # Access tokens only: a partner's API key is not signed out here (it is revoked by an
    # admin), so a partner calling this must not be told it was.
    guards = [requires(Role.MEMBER, *STAFF_ROLES)]

    @post("/logout", operation_id="logout", status_code=204,
          summary="Revoke the access token of this request (members and staff)",
          responses=problems(Unauthorized, Forbidden))
    async def logout(self, request: Request[Any, Any, Any], state: State) -> None:
        token: str = request.auth
        await state.db.transaction(lambda s: AuthService(s, state.settings).revoke(token))


class StaffAuthController(Controller):
    path = "/staff/auth"
    tags = ["staff"]
    security = [{}]

    @post("/token", operation_id="staffToken", status_code=200,
          summary="Sign a staff user (agent, supervisor, marketer, admin) in",
          responses=problems(InvalidCredentials, SignInThrottled, AccountDisabled,
                             ValidationFailed))
    async def token(self, data: JSONBody[TokenRequest], state: State) -> TokenResponse:
        attempt = await state.db.transaction(
            lambda s: AuthService(s, state.settings).staff_sign_in(data.email, data.password))
        return token_response(attempt)


class StaffMeController(Controller):
    path = "/staff/me"
    tags = ["staff"]
    guards = [staff_any]

    @get("", operation_id="getStaffMe", summary="The signed-in staff user",
         responses=problems(Unauthorized, Forbidden, StaffNotFound))
    async def me(self, request: Request[Any, Any, Any], state: State) -> StaffOut:
        principal = current_principal(request)
        staff = await state.db.transaction(
            lambda s: AuthService(s, state.settings).get_staff(principal.id))
        return StaffOut(id=staff.id, email=staff.email, name=staff.name, role=staff.role)
