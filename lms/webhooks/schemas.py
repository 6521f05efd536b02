"""API shapes of webhook configuration and deliveries (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

WebhookUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=500,
                                         description="Where events are POSTed")]


class WebhookSet(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    url: WebhookUrl | None


class WebhookOut(msgspec.Struct, rename="camel"):
    partner_code: str
    url: str | None
    secret_created_at: datetime | None
    # Only in the answer that generated it: keep it, it is never shown again.
    secret: str | None = None


class DeliveryOut(msgspec.Struct, rename="camel"):
    id: str
    event_id: int
    type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    data: dict[str, Any]
