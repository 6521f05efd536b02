"""Errors of tiers and programme policies."""

from __future__ import annotations

from lms.errors import LmsError


class PolicyInvalid(LmsError):
    status = 500
    code = "policy_invalid"
    title = "A programme policy setting is not valid"
