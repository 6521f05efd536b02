"""What every request pays before its handler runs: kept off slow paths of the framework."""

from __future__ import annotations

import inspect

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler


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
