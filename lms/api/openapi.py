"""OpenAPI helpers: every route lists the problems it can answer with."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from lms.errors import LmsError


class FieldError(msgspec.Struct):
    key: str
    message: str
    source: str | None = None


class Problem(msgspec.Struct):
    """RFC 9457 problem details; ``code`` is stable and names the condition. Validation
    problems list the fields in ``errors``; other members may be added per code."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def problems(*errors: type[LmsError]) -> dict[int, ResponseSpec]:
    """Response specs for the given error classes, grouped by status, codes listed."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for err in errors:
        by_status[err.status].append(err.code)
    return {
        status: ResponseSpec(
            data_container=Problem, media_type="application/problem+json",
            description="Problem: " + ", ".join(sorted(set(codes))),
        )
        for status, codes in sorted(by_status.items())
    }


def merge(*specs: dict[int, ResponseSpec]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for spec in specs:
        out.update(spec)
    return out
