"""Reading HTML forms and turning refusals into messages in the page's language."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from litestar import Request

from lms.errors import LmsError
from lms.web.i18n import N_, gettext

T = TypeVar("T")

# Messages by stable error code, so that every refusal reads in the page's language.
MESSAGES: dict[str, str] = {
    "invalid_email": N_("The e-mail address is not valid."),
    "weak_password": N_("The password is too weak: use at least 10 characters, 5 of them "
                        "different, not a common password and not your e-mail address."),
    "invalid_name": N_("Names must not be blank or contain control characters."),
    "invalid_phone": N_("The phone number is not valid."),
    "invalid_birth_date": N_("The birth date is not plausible."),
    "invalid_timezone": N_("Unknown time zone; use a name such as Europe/London."),
    "email_taken": N_("A member with this e-mail already exists."),
    "invalid_credentials": N_("Wrong e-mail or password."),
    "sign_in_throttled": N_("Too many failed attempts. Wait a few minutes, then try again."),
    "account_disabled": N_("This account is locked or closed. Please contact us."),
    "wrong_password": N_("The current password is not right."),
    "passwords_differ": N_("The two passwords are not the same."),
    "claim_window_closed": N_("Flights can be claimed up to 180 days after the flight date."),
    "flight_date_in_future": N_("A flight can be claimed once it has flown."),
    "claim_exists": N_("This flight has already been claimed."),
    "reset_link_invalid": N_("This password-reset link is not valid any more; ask for a new "
                             "one."),
    "csrf_refused": N_("The form was not accepted because its security token is missing or "
                       "old. Reload the page and try again."),
    "member_not_found": N_("Member not found."),
    "member_locked": N_("Your account is locked; this is not possible now."),
    "insufficient_miles": N_("Not enough miles for this."),
    "gift_recipient_not_found": N_("No member with this card number and last name."),
    "gift_to_self": N_("You cannot give miles to yourself."),
    "gift_recipient_not_active": N_("This member cannot receive gifts."),
    "already_in_pool": N_("Already in a family pool."),
    "not_in_pool": N_("You are not in a family pool."),
    "not_pool_head": N_("Only the head of the family pool may do this."),
    "head_cannot_leave": N_("The head cannot leave the pool; dissolve it instead."),
    "family_cooling_off": N_("You left a family pool recently; you can create or join one "
                             "again after the waiting period."),
    "pool_full": N_("The family pool is full."),
    "invitation_not_found": N_("This invitation does not exist."),
    "invitation_not_pending": N_("This invitation was already answered, withdrawn or has "
                                 "expired."),
    "already_invited": N_("This member already has an invitation to your pool."),
    "invitee_not_found": N_("No member with this card number can be invited."),
    "pool_member_not_found": N_("This member is not in your pool."),
    "pool_has_holds": N_("Some of the pool's miles are reserved for a purchase in progress; "
                         "try again when it is finished."),
    "unknown_partner": N_("No partner with this code."),
    "wallet_unavailable": N_("Wallet cards cannot be issued at the moment."),
    "redemption_locked": N_("Too many wrong codes were tried with your card; new codes can "
                            "be made again later."),
    "not_allowed": N_("Your role may not do this."),
    "invalid_field": N_("This field is not valid."),
    "required": N_("This field is required."),
    "invalid_miles_amount": N_("This amount of miles cannot be bought; see the limits and "
                               "steps above."),
    "yearly_cap_exceeded": N_("This would exceed the yearly limit of miles you may buy."),
    "status_not_offered": N_("This status is not offered to you now."),
    "purchases_unavailable": N_("Buying is not available at the moment."),
    "payment_provider_unavailable": N_("The payment service does not answer; try again in a "
                                       "few minutes."),
}
INVALID = MESSAGES["invalid_field"]


def message(code: str, fallback: str | None = None) -> str:
    msgid = MESSAGES.get(code)
    if msgid is None:
        return fallback or gettext(INVALID)
    return gettext(msgid)


@dataclass
class Form:
    """Submitted values (strings, trimmed of nothing: passwords keep their spaces) and the
    errors to show beside each field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # an error of the whole form

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def optional(self, name: str) -> str | None:
        value = self.get(name).strip()
        return value or None

    def require(self, *names: str) -> bool:
        for name in names:
            if not self.get(name).strip():
                self.errors[name] = message("required")
        return not self.errors

    def refuse(self, exc: LmsError) -> None:
        field_name = exc.extra.get("field")
        text = message(exc.code, exc.title)
        if isinstance(field_name, str):
            self.errors[field_name] = text
        else:
            self.problem = text

    @property
    def ok(self) -> bool:
        return not self.errors and self.problem is None


async def read(request: Request[Any, Any, Any]) -> Form:
    form = await request.form()
    return Form({key: value for key, value in form.items()
                 if isinstance(value, str) and key != "csrf_token"})


_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)`")


def convert(form: Form, data: dict[str, Any], type_: type[T]) -> T | None:
    """Check ``data`` against an API Struct (its lengths and patterns), as the JSON API would;
    a refusal is put beside the field it names."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        found = _FIELD.search(str(exc))
        form.errors[found.group(1) if found else "_"] = message("invalid_field")
        if not found:
            form.problem = message("invalid_field")
        return None
