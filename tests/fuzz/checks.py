"""The fuzzer's own check beside schemathesis' built-in ones: every error is problem+json."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

PROBLEM_JSON = "application/problem+json"


class NotAProblem(AssertionError):
    pass


@schemathesis.check
def problem_json(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """An error (4xx, 5xx) is RFC 9457 problem+json with type, title and status (equal to the
    response's), and our stable ``code``."""
    if response.status_code < 400:
        return None
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    if media_type != PROBLEM_JSON:
        raise NotAProblem(f"{response.status_code} answered as {media_type or 'no type'}, "
                          f"not {PROBLEM_JSON}")
    body: Any = response.json()
    if not isinstance(body, dict):
        raise NotAProblem(f"problem body is not an object: {body!r}")
    for member, kind in (("type", str), ("title", str), ("status", int), ("code", str)):
        if not isinstance(body.get(member), kind):
            raise NotAProblem(f"problem member {member!r} missing or not {kind.__name__}: "
                              f"{body!r}")
    if body["status"] != response.status_code:
        raise NotAProblem(f"problem status {body['status']} on a {response.status_code} "
                          "response")
    return None
