"""OpenAPI helpers: every route lists the problems it can answer with."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Reference

from lms.errors import LmsError

# The largest id accepted in a path: a larger one is a validation error, not a query the
# driver cannot send (ids are PostgreSQL bigints). Just under 2**63 - 1, so that the document,
# which writes bounds as JSON numbers (doubles), states it exactly.
MAX_ID = 2**63 - 1024


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
            # Random example bodies would make the document differ between runs.
            generate_examples=False,
            description="Problem: " + ", ".join(sorted(set(codes))),
        )
        for status, codes in sorted(by_status.items())
    }


def merge(*specs: dict[int, ResponseSpec]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for spec in specs:
        out.update(spec)
    return out


PROBLEM_JSON = "application/problem+json"
# What the framework itself answers before a handler runs (lms.api.problems): a body that is
# not JSON, and parameters or bodies that do not fit their types and constraints.
MALFORMED_BODY = "malformed_body"
VALIDATION_ERROR = "validation_error"
# Text PostgreSQL cannot store (a NUL character) in a valid body or parameter (lms.api.problems).
UNSTORABLE_TEXT = "unstorable_text"


def _problem_response(codes: list[str]) -> OpenAPIResponse:
    return OpenAPIResponse(
        description="Problem: " + ", ".join(sorted(set(codes))),
        content={PROBLEM_JSON: OpenAPIMediaType(
            schema=Reference(ref="#/components/schemas/Problem"))})


def _codes(response: OpenAPIResponse | Reference) -> list[str]:
    description = getattr(response, "description", "") or ""
    prefix = "Problem: "
    return description[len(prefix):].split(", ") if description.startswith(prefix) else []


def _is_problem(response: OpenAPIResponse | Reference) -> bool:
    return isinstance(response, OpenAPIResponse) and set(response.content or ()) == {
        PROBLEM_JSON}


@dataclass
class ProblemOperation(Operation):
    """An operation whose framework errors are documented as they are answered.

    Litestar documents its own validation error as a 400 ``application/json`` body of its
    own shape; this app answers it as a 422 ``validation_error`` problem and a body that is
    not JSON as a 400 ``malformed_body`` problem (lms.api.problems), so the document says so.
    """

    def __post_init__(self) -> None:
        responses = self.responses
        if responses is None:
            return
        validates = bool(self.parameters) or self.request_body is not None
        framework_400 = responses.get("400")
        if framework_400 is not None and not _is_problem(framework_400):
            del responses["400"]
        if self.request_body is not None:
            existing = responses.get("400")
            responses["400"] = _problem_response(
                (_codes(existing) if existing is not None else []) + [MALFORMED_BODY])
        if validates:
            existing = responses.get("422")
            responses["422"] = _problem_response(
                (_codes(existing) if existing is not None else [])
                + [VALIDATION_ERROR, UNSTORABLE_TEXT])
        self.responses = dict(sorted(responses.items()))


def document_problems(handlers: Iterable[object]) -> None:
    """Make every route handler's OpenAPI operation a ``ProblemOperation``."""
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            handler.operation_class = ProblemOperation
