"""Bearer-token authentication: attaches a Principal (or None) to every request.

Guards (lms.auth.guards) decide what a route needs; this only says who is calling.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from lms.auth.principal import Principal
from lms.auth.service import principal_for_token
from lms.partners.key_gate import GATE
from lms.partners.keys import is_api_key


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        token = bearer_token(connection.headers.get("authorization", ""))
        if token is None:
            return AuthenticationResult(user=None, auth=None)
        return AuthenticationResult(user=await authenticate(connection, token), auth=token)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], token: str
                       ) -> Principal | None:
    """Who a bearer token or a partner's API key belongs to, None if nobody."""
    if is_api_key(token):
        return await authenticate_partner(connection, token)
    principal: Principal | None = await connection.app.state.db.autocommit(
        lambda conn: principal_for_token(conn, token))
    return principal


async def authenticate_partner(connection: ASGIConnection[Any, Any, Any, Any], token: str
                               ) -> Principal | None:
    """A partner's API key (``lms_<prefix>_<secret>``). Its refusals (address, rate limit)
    are raised after the commit, so that refused requests are counted too."""
    host = connection.client.host if connection.client else None
    checked = await GATE.check(connection.app.state.db, token, host)
    return checked.result()
