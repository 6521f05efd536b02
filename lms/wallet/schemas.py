"""Wire shapes of the wallet endpoints (camelCase, as Apple's PassKit protocol also is)."""

from __future__ import annotations

from typing import Annotated

import msgspec


class GoogleSaveLink(msgspec.Struct, rename="camel"):
    save_url: Annotated[str, msgspec.Meta(
        description="https://pay.google.com/gp/v/save/<JWT>: open it to add the card")]


class DeviceRegistration(msgspec.Struct, rename="camel"):
    push_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SerialNumbers(msgspec.Struct, rename="camel"):
    serial_numbers: list[str]
    last_updated: Annotated[str, msgspec.Meta(
        description="Tag to send as passesUpdatedSince next time")]


class LogEntries(msgspec.Struct):
    logs: Annotated[list[Annotated[str, msgspec.Meta(max_length=2000)]],
                    msgspec.Meta(max_length=100)]
