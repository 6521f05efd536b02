"""Errors of idempotent requests (the first two are shared with lms.errors)."""

from __future__ import annotations

from lms.errors import Conflict, IdempotencyKeyRequired, IdempotencyKeyReused, LmsError

__all__ = ["IdempotencyKeyInvalid", "IdempotencyKeyRequired", "IdempotencyKeyReused",
           "IdempotencyRequestUnfinished"]


class IdempotencyKeyInvalid(LmsError):
    status = 400
    code = "idempotency_key_invalid"
    title = "Idempotency-Key must be 1 to 255 printable ASCII characters, no edge spaces"


class IdempotencyRequestUnfinished(Conflict):
    """A key row committed without an answer: only a route that bypasses ``idempotent``
    could leave one, so it is refused rather than guessed at."""

    code = "idempotency_request_unfinished"
    title = "The first request with this Idempotency-Key has no stored answer"
