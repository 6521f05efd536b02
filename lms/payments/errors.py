"""Errors of the payment protocol, each with a stable code."""

from __future__ import annotations

from lms.errors import Conflict, NotFound, ServiceUnavailable, Unauthorized, ValidationFailed


class PaymentProviderUnavailable(ServiceUnavailable):
    code = "payment_provider_unavailable"
    title = "The payment provider did not answer; nothing was charged, try again"


class WebhookSignatureInvalid(Unauthorized):
    code = "webhook_signature_invalid"
    title = "The webhook's signature is missing or does not match"


class WebhookSignatureStale(Unauthorized):
    code = "webhook_signature_stale"
    title = "The webhook's signature is too old (or from the future)"


class UnknownPaymentReference(NotFound):
    code = "unknown_payment_reference"
    title = "No purchase has this reference; the payment was recorded and not applied"


class PaymentMismatch(ValidationFailed):
    code = "payment_mismatch"
    title = "The payment does not match the purchase; it was recorded and not applied"


class PaymentAmountMismatch(ValidationFailed):
    code = "payment_amount_mismatch"
    title = ("The amount or currency paid differs from the purchase's price; the payment "
             "was recorded, not applied, and flagged for refund")


class PurchaseExpired(Conflict):
    code = "purchase_expired"
    title = ("The purchase expired before the payment arrived; the payment was recorded, "
             "not applied, and flagged for refund")


class PurchaseNotPending(Conflict):
    code = "purchase_not_pending"
    title = ("The purchase was no longer waiting for payment; the payment was recorded, not "
             "applied, and flagged for refund")
