"""Errors of the wallets and the PassKit web service, each with a stable code."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, Unauthorized


class PassUnauthorized(Unauthorized):
    code = "pass_unauthorized"
    title = "Send the pass's authentication token as 'Authorization: ApplePass <token>'"


class PassTypeUnknown(NotFound):
    code = "pass_type_unknown"
    title = "This server issues no passes of that type"


class PassNotFound(NotFound):
    code = "pass_not_found"
    title = "No such pass"


class MembershipClosed(Conflict):
    code = "member_closed"
    title = "A closed membership has no wallet card"
