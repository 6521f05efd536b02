"""Domain errors with a stable code and HTTP status, rendered as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, ClassVar


class LmsError(Exception):
    """Base of every expected error; ``code`` is stable and part of the API contract."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class ValidationFailed(LmsError):
    status = 422
    code = "validation_error"
    title = "The request is not valid"


class NotFound(LmsError):
    status = 404
    code = "not_found"
    title = "Not found"


class Unauthorized(LmsError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(LmsError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class Conflict(LmsError):
    status = 409
    code = "conflict"
    title = "Conflict"


class TooManyRequests(LmsError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(max(1, retry_after))


class ServiceUnavailable(LmsError):
    status = 503
    code = "service_unavailable"
    title = "Service temporarily unavailable"


class IdempotencyKeyReused(LmsError):
    status = 409
    code = "idempotency_key_reused"
    title = "Idempotency-Key was already used with a different request"


class IdempotencyKeyRequired(LmsError):
    status = 400
    code = "idempotency_key_required"
    title = "This operation requires an Idempotency-Key header"
