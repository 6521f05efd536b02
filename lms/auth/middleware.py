"""Bearer-token authentication: attaches a Principal (or None) to every request.

Guards (lms.auth.guards) decide what a route needs; this only says who is calling.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from lms.auth.service import AuthService


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return AuthenticationResult(user=None, auth=None)
        state = connection.app.state

        async def lookup(session: Any) -> Any:
            return await AuthService(session, state.settings).principal_for(token.strip())

        principal = await state.db.transaction(lookup)
        return AuthenticationResult(user=principal, auth=token.strip())
