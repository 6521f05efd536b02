"""Route guards: every endpoint states which principals may call it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from lms.auth.principal import STAFF_ROLES, Principal, Role
from lms.errors import Forbidden, Unauthorized

# Guards are coroutines: Litestar runs a plain function guard in a worker thread
# (sync_to_thread), a thread hand-off on every request for a check of a few attributes.
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "The API key lacks the scope this endpoint needs"


def authenticated(user: object) -> Principal:
    """``user`` if it is a principal, else the 401 of every route that needs one."""
    if not isinstance(user, Principal):
        error = Unauthorized("Send a valid bearer token in the Authorization header")
        error.headers["WWW-Authenticate"] = "Bearer"
        raise error
    return user


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    return authenticated(connection.scope.get("user"))


def check_role(user: object, allowed: frozenset[Role]) -> Principal:
    """What ``requires`` checks, for a route that authenticates by itself (GET
    /v1/me/balance, lms.accounts.routes): 401 without a principal, 403 for another role."""
    principal = authenticated(user)
    if principal.role not in allowed:
        raise Forbidden("Your role may not call this endpoint")
    return principal


def requires(*roles: Role) -> Guard:
    allowed = frozenset(roles)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
                    ) -> None:
        check_role(connection.scope.get("user"), allowed)

    guard.__name__ = "requires_" + "_or_".join(sorted(str(r) for r in roles))
    return guard


def requires_scope(scope: str) -> Guard:
    """A partner whose API key has ``scope``; anyone else is refused with 403
    ``insufficient_scope``."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
                    ) -> None:
        principal = current_principal(connection)
        if principal.role is not Role.PARTNER or scope not in principal.scopes:
            raise InsufficientScope(f"This endpoint needs an API key with scope {scope!r}",
                                    scope=scope)

    guard.__name__ = f"requires_scope_{scope}"
    return guard


MEMBERS = frozenset({Role.MEMBER})
member_only = requires(*MEMBERS)
staff_any = requires(*STAFF_ROLES)
admin_only = requires(Role.ADMIN)
