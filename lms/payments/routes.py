"""The provider's side of us: the signed webhook, and the page a payer returns to."""

from __future__ import annotations

import html
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.api.openapi import problems
from lms.errors import LmsError, ValidationFailed
from lms.payments import signature
from lms.payments.errors import (
    PaymentAmountMismatch,
    PaymentMismatch,
    PurchaseExpired,
    PurchaseNotPending,
    UnknownPaymentReference,
    WebhookSignatureInvalid,
    WebhookSignatureStale,
)
from lms.payments.schemas import Outcome, WebhookEvent, WebhookReceipt
from lms.payments.service import PaymentService
from lms.purchases.service import PurchaseService

# Outcomes that refuse the payment: recorded (and committed) first, then answered as errors.
REFUSALS: dict[Outcome, type[LmsError]] = {
    Outcome.UNKNOWN_REFERENCE: UnknownPaymentReference,
    Outcome.PAYMENT_MISMATCH: PaymentMismatch,
    Outcome.AMOUNT_MISMATCH: PaymentAmountMismatch,
    Outcome.EXPIRED: PurchaseExpired,
    Outcome.NOT_PENDING: PurchaseNotPending,
}


class PaymentWebhookController(Controller):
    path = "/payments"
    tags = ["payments"]
    # No bearer token: the provider proves itself with the HMAC signature.
    security = [{}]

    @post("/webhook", operation_id="receivePaymentWebhook", status_code=200,
          summary="The payment provider reports a payment's final state (HMAC-signed)",
          description=(
              "Body: `{id, paymentId, status: succeeded|failed|canceled, amount, currency, "
              "reference}`, signed in the header `LMS-Signature: t=<unix seconds>,v1=<hex>` "
              "where v1 = HMAC-SHA256(secret, `<t>.<raw body>`). A missing, wrong or stale "
              "(older than `LMS_PAYMENT_WEBHOOK_TOLERANCE_SECONDS`) signature is refused with "
              "401 and changes nothing. Each provider payment id is applied once: a replay "
              "answers 200 with the first outcome and `replayed: true`. A success completes "
              "the purchase with our `reference`; failed or canceled cancels it. A payment "
              "that cannot be applied (unknown reference, other payment, amount or "
              "currency not the price, purchase expired) is recorded, flagged for refund "
              "where money was taken, and answered with a 4xx problem."),
          responses=problems(WebhookSignatureInvalid, WebhookSignatureStale, ValidationFailed,
                             UnknownPaymentReference, PaymentMismatch, PaymentAmountMismatch,
                             PurchaseExpired, PurchaseNotPending))
    async def webhook(self, request: Request[Any, Any, Any], state: State) -> WebhookReceipt:
        body = await request.body()
        settings = state.settings
        try:
            signature.verify(settings.payment_webhook_secret,
                             request.headers.get(signature.HEADER), body,
                             tolerance=settings.payment_webhook_tolerance_seconds)
        except signature.SignatureError as exc:
            raise (WebhookSignatureStale if exc.stale else WebhookSignatureInvalid)(
                str(exc)) from exc
        try:
            payment = msgspec.json.decode(body, type=WebhookEvent)
            raw = msgspec.json.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ValidationFailed(f"The webhook body is not understood: {exc}") from exc

        async def work(session: AsyncSession) -> Any:
            return await PaymentService(session, state.system_accounts, settings).receive(
                payment, raw)

        receipt = await state.db.transaction(work)
        refusal = REFUSALS.get(receipt.outcome)
        if refusal is not None and not receipt.replayed:
            raise refusal(reference=payment.reference, paymentId=payment.payment_id)
        return WebhookReceipt(outcome=str(receipt.outcome), replayed=receipt.replayed,
                              reference=payment.reference, payment_id=payment.payment_id)

    @get("/return/{reference:str}", operation_id="paymentReturnPage",
         media_type=MediaType.HTML, include_in_schema=False,
         summary="Where the provider sends the payer back: the purchase's state")
    async def return_page(self, reference: Annotated[str, Parameter(max_length=40)],
                          state: State) -> str:
        async def work(session: AsyncSession) -> Any:
            return await PurchaseService(session, state.system_accounts,
                                         state.settings).by_reference(reference)

        purchase = await state.db.transaction(work)
        if purchase is None:
            text = "We do not know this purchase."
        elif purchase.status == "pending":
            text = ("Thank you. We are waiting for the payment provider's confirmation; "
                    "your purchase completes as soon as it arrives.")
        else:
            what = (f"{purchase.miles:,} miles" if purchase.miles else
                    f"{purchase.tier} status")
            text = f"Your purchase of {what} is {purchase.status}."
        return ("<!doctype html><html><head><meta charset='utf-8'><title>Purchase</title>"
                f"</head><body><h1>Purchase</h1><p>{html.escape(text)}</p></body></html>")
