"""Staff sign-in."""

from __future__ import annotations

from typing import Any

from litestar import Controller, post
from litestar.datastructures import State

from lms.accounts.schemas import TokenRequest, TokenResponse
from lms.api.openapi import problems
from lms.auth.service import AuthService, InvalidCredentials, SignInThrottled
from lms.errors import ValidationFailed


class StaffAuthController(Controller):
    path = "/staff/auth"
    tags = ["staff"]
    security = [{}]

    @post("/token", operation_id="staffToken", status_code=200,
          summary="Sign a staff user (agent, supervisor, marketer, admin) in",
          responses=problems(InvalidCredentials, SignInThrottled, ValidationFailed))
    async def token(self, data: TokenRequest, state: State) -> TokenResponse:
        outcome: dict[str, Any] = {}

        async def sign_in(session: Any) -> None:
            auth = AuthService(session, state.settings)
            try:
                principal = await auth.staff_sign_in(data.email, data.password)
            except InvalidCredentials as exc:
                outcome["error"] = exc
                return
            outcome["token"] = await auth.issue_token(principal)

        await state.db.transaction(sign_in)
        if "error" in outcome:
            raise outcome["error"]
        token, expires = outcome["token"]
        return TokenResponse(access_token=token, token_type="bearer", expires_at=expires)
