"""RFC 9457 problem+json for every error, including the framework's own and the unexpected."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    SerializationException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import MethodNotAllowedException

from lms.api.openapi import UNSTORABLE_TEXT
from lms.db import sqlstate
from lms.errors import LmsError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://lms.example/problems/"


def problem(status: int, code: str, title: str, detail: str | None = None,
            instance: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title, "status": status,
                            "code": code}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def lms_error_handler(request: Request[Any, Any, Any], exc: LmsError) -> Response[Any]:
    return problem(exc.status, exc.code, exc.title, exc.detail, request.url.path,
                   headers=exc.headers or None, **exc.extra)


FRAMEWORK_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("too_many_requests", "Too many requests"),
}


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """The framework's own errors (routing, body parsing, parameter validation) as problems.

    Wrong types and constraint violations are 422 ``validation_error`` with ``errors`` listing
    each field (``key``), like the domain's own validation errors; a body that is not JSON at
    all is 400 ``malformed_body``.
    """
    if isinstance(exc, ClientException) and isinstance(exc.__cause__, SerializationException):
        return problem(400, "malformed_body", "The request body is not valid JSON",
                       exc.detail, request.url.path)
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else None
        # Litestar's own detail repeats the URL with its query string; the fields say it all.
        return problem(422 if exc.status_code == 400 else exc.status_code, "validation_error",
                       "The request is not valid", "See errors for the fields that are wrong",
                       request.url.path, errors=errors)
    status = exc.status_code
    if isinstance(exc, NotAuthorizedException):
        status = 401
    elif isinstance(exc, PermissionDeniedException):
        status = 403
    elif isinstance(exc, NotFoundException):
        status = 404
    elif isinstance(exc, MethodNotAllowedException):
        status = 405
    if status >= 500:
        log.error("http error %s on %s: %s", status, request.url.path, exc.detail)
        return problem(status, "internal_error", "Internal error", None, request.url.path)
    code, title = FRAMEWORK_CODES.get(status, ("http_error", "Request failed"))
    detail = exc.detail if exc.detail and exc.detail.lower() != title.lower() else None
    return problem(status, code, title, detail,
                   request.url.path, headers=exc.headers or None)


# PostgreSQL refuses a text value it cannot store (a NUL character, which every JSON string
# may carry as \u0000, or bytes invalid in UTF-8): the statement fails and its transaction
# rolls back, so nothing was written, and the input, not the server, is at fault.
UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if sqlstate(exc) in UNSTORABLE_TEXT_SQLSTATES:
        return problem(422, UNSTORABLE_TEXT, "The request carries text that cannot be stored",
                       "Text must not contain the NUL character (\\u0000)", request.url.path)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal_error", "Internal error",
                   "An unexpected error occurred; it has been logged", request.url.path)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    LmsError: lms_error_handler,
    HTTPException: http_exception_handler,
    Exception: unexpected_error_handler,
}
