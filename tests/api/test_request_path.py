"""What every request pays before its handler runs: kept off slow paths of the framework."""

from __future__ import annotations

import inspect

import httpx
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from lms.api.http import NO_COMPRESSION
from tests.factories import bearer, register_member


def handlers(app: Litestar) -> list[HTTPRouteHandler]:
    return [handler for route in app.routes for handler in getattr(route, "route_handlers", ())
            if isinstance(handler, HTTPRouteHandler)]


def test_every_guard_runs_on_the_event_loop(app: Litestar) -> None:
    """Litestar runs a guard that is a plain function in a worker thread (sync_to_thread),
    a thread hand-off on every request; ours are coroutines, so none is wrapped."""
    guarded = 0
    for handler in handlers(app):
        for guard in handler.resolve_guards():
            guarded += 1
            assert inspect.iscoroutinefunction(guard), (handler, guard)
    assert guarded > 50


async def test_the_balance_read_is_never_gzipped(client: httpx.AsyncClient) -> None:
    """Its answer is far below the compression threshold, so the compression middleware
    (which prepares a gzip stream for every client that accepts gzip) leaves it alone."""
    member = await register_member(client)
    headers = bearer(member["accessToken"]) | {"Accept-Encoding": "gzip"}
    response = await client.get("/v1/me/balance", headers=headers)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers


def test_small_hot_routes_skip_the_compression_middleware(app: Litestar) -> None:
    balance = next(h for h in handlers(app) if h.operation_id == "getMyBalance")
    assert balance.opt.get(NO_COMPRESSION) is True
    assert app.compression_config is not None
    assert app.compression_config.exclude_opt_key == NO_COMPRESSION
