"""The client side of the provider protocol: ``POST {provider}/v1/payments``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx
import msgspec

from lms.payments.errors import PaymentProviderUnavailable
from lms.settings import Settings


class PaymentRequest(msgspec.Struct, rename="camel"):
    amount: int  # minor units
    currency: str
    reference: str  # ours; the provider echoes it in every webhook
    description: str
    return_url: str
    webhook_url: str


class CreatedPayment(msgspec.Struct, rename="camel"):
    id: str
    payment_url: str


class PaymentProvider(Protocol):
    async def create_payment(self, request: PaymentRequest) -> CreatedPayment: ...


@dataclass(frozen=True, slots=True)
class HttpPaymentProvider:
    """Creates payments over HTTP. The provider answers the same payment for the same
    reference, so a retried unit of work does not charge twice."""

    base_url: str
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPaymentProvider:
        return cls(settings.payment_provider_url.rstrip("/"),
                   settings.payment_provider_timeout_seconds)

    async def create_payment(self, request: PaymentRequest) -> CreatedPayment:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    f"{self.base_url}/v1/payments", content=msgspec.json.encode(request),
                    headers={"Content-Type": "application/json",
                             "Idempotency-Key": request.reference})
        except httpx.HTTPError as exc:
            raise PaymentProviderUnavailable(
                f"The payment provider at {self.base_url} is unreachable") from exc
        if response.status_code not in (200, 201):
            raise PaymentProviderUnavailable(
                f"The payment provider answered {response.status_code}")
        try:
            return msgspec.json.decode(response.content, type=CreatedPayment)
        except msgspec.ValidationError as exc:
            raise PaymentProviderUnavailable("The payment provider's answer was not "
                                             "understood") from exc


def webhook_url(settings: Settings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/payments/webhook"


def return_url(settings: Settings, reference: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/payments/return/{reference}"
