"""Bearer-token authentication: attaches a Principal (or None) to every request.

Guards (lms.auth.guards) decide what a route needs; this only says who is calling.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from lms.auth.service import principal_for_token
from lms.db import RawConnection
from lms.partners.keys import is_api_key
from lms.partners.service import ApiKeyService, KeyCheck


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return AuthenticationResult(user=None, auth=None)
        state = connection.app.state
        token = token.strip()
        if is_api_key(token):
            return await self.authenticate_partner(connection, token)

        principal = await state.db.autocommit(
            lambda conn: principal_for_token(conn, token))
        return AuthenticationResult(user=principal, auth=token)

    async def authenticate_partner(self, connection: ASGIConnection[Any, Any, Any, Any],
                                   token: str) -> AuthenticationResult:
        """A partner's API key (``lms_<prefix>_<secret>``). Its refusals (address, rate
        limit) are raised after the commit, so that refused requests are counted too."""
        host = connection.client.host if connection.client else None

        async def check(conn: RawConnection) -> KeyCheck:
            return await ApiKeyService(conn).authenticate(token, host)

        checked = await connection.app.state.db.autocommit(check)
        return AuthenticationResult(user=checked.result(), auth=token)
