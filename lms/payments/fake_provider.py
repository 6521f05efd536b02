"""A fake payment provider: a real HTTP server speaking the provider protocol, for the demo and
the tests (``lms payments fake-provider``). Nothing here is used by the service itself.

- ``POST /v1/payments`` {amount, currency, reference, description, returnUrl, webhookUrl}
  -> 201 {id, paymentUrl, status}; the same reference answers the same payment (200).
- ``GET /pay/{id}``: the hosted payment page, with "Pay" and "Cancel" buttons (plain forms);
  either sends the signed webhook to the webhook URL, then sends the payer to the return URL.
- ``POST /v1/payments/{id}/complete`` {status, amount?, currency?}: the same from a program
  (tests); ``amount``/``currency`` override what is reported, to simulate a wrong payment.
- ``POST /v1/payments/{id}/resend``: deliver the last webhook again, byte for byte (with a
  fresh signature), as a provider retrying would.
- ``GET /v1/payments/{id}``: the payment and the answers its webhooks got.

Payments live in memory: a restart forgets them.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
import msgspec
from litestar import Litestar, Response, get, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Body, Parameter
from litestar.response import Redirect

from lms.payments import signature
from lms.payments.client import PaymentRequest

FinalStatus = Literal["succeeded", "failed", "canceled"]
PaymentId = Annotated[str, Parameter(max_length=100)]


class CompleteRequest(msgspec.Struct, rename="camel"):
    status: FinalStatus = "succeeded"
    amount: Annotated[int, msgspec.Meta(ge=0)] | None = None
    currency: str | None = None


class PaymentOut(msgspec.Struct, rename="camel"):
    id: str
    payment_url: str
    status: str
    amount: int
    currency: str
    reference: str
    deliveries: list[dict[str, Any]]


class Delivery(msgspec.Struct, rename="camel"):
    status_code: int
    body: str


@dataclass
class FakePayment:
    id: str
    request: PaymentRequest
    payment_url: str
    status: str = "pending"
    last_webhook: bytes | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def out(self) -> PaymentOut:
        return PaymentOut(id=self.id, payment_url=self.payment_url, status=self.status,
                          amount=self.request.amount, currency=self.request.currency,
                          reference=self.request.reference, deliveries=self.deliveries)


@dataclass
class Provider:
    secret: str
    public_url: str
    payments: dict[str, FakePayment] = field(default_factory=dict)
    by_reference: dict[str, str] = field(default_factory=dict)

    def get(self, payment_id: str) -> FakePayment:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise NotFoundException(f"No payment {payment_id}")
        return payment

    async def deliver(self, payment: FakePayment, body: bytes) -> Delivery:
        headers = {"Content-Type": "application/json",
                   signature.HEADER: signature.sign(self.secret, body)}
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.post(payment.request.webhook_url, content=body,
                                           headers=headers)
            delivery = Delivery(answer.status_code, answer.text)
        except httpx.HTTPError as exc:
            delivery = Delivery(0, f"not delivered: {exc!r}")
        payment.deliveries.append(msgspec.to_builtins(delivery))
        return delivery

    async def finish(self, payment: FakePayment, data: CompleteRequest) -> Delivery:
        if payment.status != "pending":
            raise ClientException(f"The payment is already {payment.status}", status_code=409)
        payment.status = data.status
        body = msgspec.json.encode({
            "id": f"evt_{secrets.token_hex(8)}", "paymentId": payment.id,
            "status": data.status,
            "amount": payment.request.amount if data.amount is None else data.amount,
            "currency": data.currency or payment.request.currency,
            "reference": payment.request.reference})
        payment.last_webhook = body
        return await self.deliver(payment, body)


def provider_of(state: State) -> Provider:
    provider: Provider = state.provider
    return provider


@post("/v1/payments", status_code=201)
async def create_payment(data: Annotated[PaymentRequest, Body()], state: State
                         ) -> Response[PaymentOut]:
    provider = provider_of(state)
    known = provider.by_reference.get(data.reference)
    if known is not None:
        return Response(provider.payments[known].out(), status_code=200)
    payment_id = f"pay_{secrets.token_hex(12)}"
    payment = FakePayment(payment_id, data, f"{provider.public_url}/pay/{payment_id}")
    provider.payments[payment_id] = payment
    provider.by_reference[data.reference] = payment_id
    return Response(payment.out(), status_code=201)


@get("/v1/payments/{payment_id:str}")
async def read_payment(payment_id: PaymentId, state: State) -> PaymentOut:
    return provider_of(state).get(payment_id).out()


@post("/v1/payments/{payment_id:str}/complete", status_code=200)
async def complete(payment_id: PaymentId, state: State,
                   data: Annotated[CompleteRequest | None, Body()] = None) -> Delivery:
    provider = provider_of(state)
    return await provider.finish(provider.get(payment_id), data or CompleteRequest())


@post("/v1/payments/{payment_id:str}/resend", status_code=200)
async def resend(payment_id: PaymentId, state: State) -> Delivery:
    provider = provider_of(state)
    payment = provider.get(payment_id)
    if payment.last_webhook is None:
        raise ClientException("No webhook was sent for this payment yet", status_code=409)
    return await provider.deliver(payment, payment.last_webhook)


@get("/pay/{payment_id:str}", media_type=MediaType.HTML)
async def payment_page(payment_id: PaymentId, state: State) -> str:
    payment = provider_of(state).get(payment_id)
    r = payment.request
    amount = f"{r.amount // 100}.{r.amount % 100:02d} {r.currency}"
    if payment.status != "pending":
        action = f"<p>This payment is {html.escape(payment.status)}.</p>"
    else:
        action = (f"<form method='post' action='/pay/{payment.id}/pay'>"
                  "<button type='submit'>Pay</button></form>"
                  f"<form method='post' action='/pay/{payment.id}/cancel'>"
                  "<button type='submit'>Cancel</button></form>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Fake payment</title>"
            "</head><body><h1>Fake payment provider</h1>"
            f"<p>{html.escape(r.description)}: <strong>{html.escape(amount)}</strong></p>"
            f"<p>Reference {html.escape(r.reference)}</p>{action}</body></html>")


async def _button(payment_id: PaymentId, state: State, status: FinalStatus) -> Redirect:
    provider = provider_of(state)
    payment = provider.get(payment_id)
    await provider.finish(payment, CompleteRequest(status=status))
    return Redirect(path=payment.request.return_url, status_code=303)


@post("/pay/{payment_id:str}/pay", status_code=303)
async def pay_button(payment_id: PaymentId, state: State) -> Redirect:
    return await _button(payment_id, state, "succeeded")


@post("/pay/{payment_id:str}/cancel", status_code=303)
async def cancel_button(payment_id: PaymentId, state: State) -> Redirect:
    return await _button(payment_id, state, "canceled")


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_provider_app(secret: str, public_url: str) -> Litestar:
    return Litestar(
        route_handlers=[create_payment, read_payment, complete, resend, payment_page,
                        pay_button, cancel_button, health],
        state=State({"provider": Provider(secret, public_url.rstrip("/"))}),
        openapi_config=None, debug=False)


def serve(host: str, port: int, secret: str, public_url: str | None = None) -> None:
    import uvicorn

    url = public_url or f"http://{host}:{port}"
    uvicorn.run(create_provider_app(secret, url), host=host, port=port, log_level="warning")
