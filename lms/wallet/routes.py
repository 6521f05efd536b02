"""Wallet endpoints: the member's cards, and Apple's PassKit web service for devices.

The PassKit paths follow Apple's protocol under ``webServiceURL`` = ``<base>/v1/passkit``
(devices append ``/v1/devices/...``, ``/v1/passes/...``, ``/v1/log``). Devices authenticate
with ``Authorization: ApplePass <token>``, not a bearer token, so these paths are left out of
the bearer-token middleware (lms.app).
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from lms.accounts.errors import MemberNotFound
from lms.api.openapi import merge, problems
from lms.auth.guards import current_principal, member_only
from lms.errors import Forbidden, Unauthorized, ValidationFailed
from lms.wallet.errors import MembershipClosed, PassTypeUnknown, PassUnauthorized
from lms.wallet.pkpass import MEDIA_TYPE
from lms.wallet.schemas import DeviceRegistration, GoogleSaveLink, LogEntries, SerialNumbers
from lms.wallet.service import WalletService

log = logging.getLogger(__name__)

PASSKIT_SECURITY: list[dict[str, list[str]]] = [{"applePass": []}]

AuthorizationHeader = Annotated[str | None, HeaderParameter(
    name="Authorization", required=False,
    description="ApplePass <authenticationToken from pass.json>")]
DeviceId = Annotated[str, PathParameter(
    min_length=1, max_length=128, description="deviceLibraryIdentifier chosen by the device")]
PassType = Annotated[str, PathParameter(description="The pass type identifier")]
Serial = Annotated[str, PathParameter(max_length=64, description="The pass's serial number")]


def service(state: State, session: Any) -> WalletService:
    return WalletService(session, state.settings, state.system_accounts)


def pkpass_response(data: bytes, last_modified: datetime | None = None) -> Response[bytes]:
    headers = {"Content-Disposition": 'attachment; filename="card.pkpass"',
               "Cache-Control": "no-store"}
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified.replace(microsecond=0),
                                                   usegmt=True)
    return Response(content=data, media_type=MEDIA_TYPE, headers=headers)


def http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class MyWalletController(Controller):
    path = "/me/wallet"
    tags = ["members", "wallet"]
    guards = [member_only]

    @get("/apple", operation_id="getMyApplePass",
         summary="The member's card for Apple Wallet (.pkpass)",
         description=("A signed store card: name, card number as a QR code with its text, "
                      "tier in the tier's colours, miles available. The pass registers with "
                      "the PassKit web service and is updated when the balance or tier "
                      "changes."),
         media_type=MEDIA_TYPE,
         responses=merge({200: ResponseSpec(data_container=bytes, media_type=MEDIA_TYPE,
                                            description="application/vnd.apple.pkpass")},
                         problems(Unauthorized, Forbidden, MemberNotFound, MembershipClosed)))
    async def apple(self, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
        principal = current_principal(request)
        data: bytes = await state.db.transaction(
            lambda s: service(state, s).apple_pass(principal.id))
        return pkpass_response(data)

    @get("/google", operation_id="getMyGoogleWalletLink",
         summary="A 'Save to Google Wallet' link for the member's card",
         description=("The link's JWT (RS256, the issuer's service account) carries the "
                      "loyalty object: card number as QR code, miles, tier. Later changes "
                      "reach the saved card through the Google Wallet API."),
         responses=problems(Unauthorized, Forbidden, MemberNotFound, MembershipClosed))
    async def google(self, request: Request[Any, Any, Any], state: State) -> GoogleSaveLink:
        principal = current_principal(request)
        url: str = await state.db.transaction(
            lambda s: service(state, s).google_save_url(principal.id))
        return GoogleSaveLink(save_url=url)


class PassKitController(Controller):
    """Apple's PassKit web service, called by devices holding a pass."""

    path = "/passkit/v1"
    tags = ["passkit"]
    security = PASSKIT_SECURITY

    @post("/devices/{deviceLibraryIdentifier:str}/registrations/{passTypeIdentifier:str}"
          "/{serialNumber:str}", operation_id="registerPassDevice", status_code=201,
          summary="Register a device for update notifications of a pass",
          description="201 when newly registered, 200 when the device already was.",
          responses=merge({200: ResponseSpec(data_container=None,
                                             description="Already registered")},
                          problems(PassUnauthorized, PassTypeUnknown)))
    async def register(self, state: State,
                       deviceLibraryIdentifier: DeviceId,
                       passTypeIdentifier: PassType, serialNumber: Serial,
                       data: JSONBody[DeviceRegistration],
                       authorization: AuthorizationHeader = None) -> Response[None]:
        created: bool = await state.db.transaction(
            lambda s: service(state, s).register(
                deviceLibraryIdentifier, passTypeIdentifier, serialNumber, authorization,
                data.push_token))
        return Response(content=None, status_code=201 if created else 200)

    @delete("/devices/{deviceLibraryIdentifier:str}/registrations/{passTypeIdentifier:str}"
            "/{serialNumber:str}", operation_id="unregisterPassDevice", status_code=200,
            summary="Stop update notifications of a pass to a device",
            responses=problems(PassUnauthorized, PassTypeUnknown))
    async def unregister(self, state: State,
                         deviceLibraryIdentifier: DeviceId, passTypeIdentifier: PassType,
                         serialNumber: Serial,
                         authorization: AuthorizationHeader = None) -> Response[None]:
        await state.db.transaction(
            lambda s: service(state, s).unregister(
                deviceLibraryIdentifier, passTypeIdentifier, serialNumber, authorization))
        return Response(content=None, status_code=200)

    @get("/devices/{deviceLibraryIdentifier:str}/registrations/{passTypeIdentifier:str}",
         operation_id="listUpdatedPasses",
         summary="Serial numbers of the device's passes changed since a tag",
         description=("204 when none changed. Devices send no Authorization header here, "
                      "as Apple's protocol has it; one that is sent must be valid."),
         responses=merge({204: ResponseSpec(data_container=None,
                                            description="No pass changed")},
                         problems(PassUnauthorized, PassTypeUnknown)))
    async def updated(self, state: State,
                      deviceLibraryIdentifier: DeviceId, passTypeIdentifier: PassType,
                      passesUpdatedSince: Annotated[str | None, QueryParameter(
                          name="passesUpdatedSince", required=False, max_length=32,
                          description="lastUpdated of an earlier answer")] = None,
                      authorization: AuthorizationHeader = None
                      ) -> Response[SerialNumbers | None]:
        found: tuple[list[str], str] | None = await state.db.transaction(
            lambda s: service(state, s).updated_serials(
                deviceLibraryIdentifier, passTypeIdentifier, passesUpdatedSince,
                authorization))
        if found is None:
            return Response(content=None, status_code=204)
        return Response(content=SerialNumbers(serial_numbers=found[0], last_updated=found[1]))

    @get("/passes/{passTypeIdentifier:str}/{serialNumber:str}", operation_id="getLatestPass",
         summary="The latest version of a pass",
         description="304 when it has not changed since If-Modified-Since.",
         media_type=MEDIA_TYPE,
         responses=merge({200: ResponseSpec(data_container=bytes, media_type=MEDIA_TYPE,
                                            description="application/vnd.apple.pkpass"),
                          304: ResponseSpec(data_container=None, description="Not modified")},
                         problems(PassUnauthorized, PassTypeUnknown, MembershipClosed)))
    async def latest(self, state: State,
                     passTypeIdentifier: PassType, serialNumber: Serial,
                     authorization: AuthorizationHeader = None,
                     if_modified_since: Annotated[str | None, HeaderParameter(
                         name="If-Modified-Since", required=False)] = None
                     ) -> Response[bytes]:
        since = http_date(if_modified_since)
        latest = await state.db.transaction(
            lambda s: service(state, s).latest_pass(
                passTypeIdentifier, serialNumber, authorization, since))
        if latest is None:
            return Response(content=b"", status_code=304)
        return pkpass_response(latest.pkpass, latest.last_modified)

    @post("/log", operation_id="logPassKitMessages", status_code=200, security=[{}],
          summary="Messages a device reports about problems with passes",
          description="Recorded in the server log (Apple's devices send no credentials).",
          responses=problems(ValidationFailed))
    async def log_messages(self, data: JSONBody[LogEntries]) -> None:
        for message in data.logs:
            log.warning("PassKit device log: %s", message[:500].replace("\n", " "))
