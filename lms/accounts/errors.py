"""Errors of member operations, each with a stable code (part of the API contract)."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, ValidationFailed


class FieldInvalid(ValidationFailed):
    """A field that is well-formed but not acceptable; ``errors`` has the same shape as the
    framework's validation errors, so that clients read both the same way."""

    def __init__(self, field: str, detail: str | None = None) -> None:
        super().__init__(detail, field=field,
                         errors=[{"key": field, "message": detail or self.title,
                                  "source": "body"}])


class InvalidEmail(FieldInvalid):
    code = "invalid_email"
    title = "The e-mail address is not valid"


class WeakPassword(FieldInvalid):
    code = "weak_password"
    title = "The password is too weak"


class InvalidName(FieldInvalid):
    code = "invalid_name"
    title = "Names must not be blank or contain control characters"


class InvalidPhone(FieldInvalid):
    code = "invalid_phone"
    title = "The phone number is not valid"


class InvalidBirthDate(FieldInvalid):
    code = "invalid_birth_date"
    title = "The birth date is not plausible"


class InvalidTimezone(FieldInvalid):
    code = "invalid_timezone"
    title = "Unknown time zone (use an IANA name such as Europe/London)"


class WrongPassword(FieldInvalid):
    code = "wrong_password"
    title = "The current password is not right"


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    title = "The cursor is not valid; use nextCursor from the previous page"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "A member with this e-mail already exists"


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "Member not found"
