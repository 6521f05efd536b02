"""Opaque keyset cursors: the sort key of the last row of a page, base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from lms.callcentre.errors import InvalidCursor

MAX_LIMIT = 100
# Keys of rows by descending id start below every id.
NO_CURSOR = 2**63 - 1


def encode_cursor(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: tuple[type, ...]) -> list[Any] | None:
    """The key of ``cursor``, checked against ``shape`` (one type per element)."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidCursor() from exc
    if not isinstance(key, list) or len(key) != len(shape) or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, shape,
                                                                         strict=True)):
        raise InvalidCursor()
    return key
