"""The wire shapes of the provider protocol (camelCase), shared by our webhook endpoint and
the fake provider."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

PaymentStatus = Literal["succeeded", "failed", "canceled"]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class WebhookEvent(msgspec.Struct, rename="camel"):
    """What the provider POSTs to our webhook URL when a payment reaches a final state,
    signed in the ``LMS-Signature`` header (see lms.payments.signature)."""

    id: Id  # the provider's event id
    payment_id: Id
    status: PaymentStatus
    amount: Annotated[int, msgspec.Meta(ge=0)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    reference: Id


class Outcome(enum.StrEnum):
    """What a webhook did; stored with it and answered to its replays."""

    COMPLETED = "completed"
    CANCELED = "canceled"
    IGNORED = "ignored"  # a failure for a purchase that was no longer pending
    UNKNOWN_REFERENCE = "unknown_reference"
    PAYMENT_MISMATCH = "payment_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    EXPIRED = "expired"
    NOT_PENDING = "not_pending"


class WebhookReceipt(msgspec.Struct, rename="camel"):
    outcome: str
    replayed: bool
    reference: str
    payment_id: str
