"""Errors of missing-flight claims, each with a stable code."""

from __future__ import annotations

from lms.errors import Conflict, ValidationFailed


class ClaimWindowClosed(ValidationFailed):
    code = "claim_window_closed"
    title = "Flights can be claimed up to 180 days after the flight date"


class FlightDateInFuture(ValidationFailed):
    code = "flight_date_in_future"
    title = "A flight can be claimed once it has flown"


class ClaimExists(Conflict):
    code = "claim_exists"
    title = "This flight has already been claimed"
