"""The authorisation matrix: every operation of openapi/openapi.json x every principal, with
the answer each must get. tests/api/test_authorization_matrix.py checks every cell against the
running app; docs/authorization.md is this table rendered (``python -m tests.api.authz_matrix
> docs/authorization.md``; a test fails when the page drifts).

Answer classes:
- allowed: the request passed authentication and authorisation. 2xx, or a refusal that only
  a caller who got that far can see: 422 validation_error (the body sent is invalid on
  purpose), 409 with a business rule's code, 400 idempotency_key_required.
- 401: no (valid) credentials. 403: authenticated, but the role or the API key's scope may
  not. 404: authorised for the endpoint, but the resource is not the caller's (never its data).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lms.accrual.errors import RegistrationNotOpen
from lms.auth.guards import InsufficientScope
from lms.callcentre.errors import AdjustmentNotFound
from lms.errors import Forbidden, LmsError, Unauthorized, ValidationFailed
from lms.family.errors import (
    AlreadyInPool,
    HeadCannotLeave,
    InvitationNotFound,
    InvitationNotPending,
    PoolHasHolds,
    PoolMemberNotFound,
)
from lms.ledger.errors import HoldNotFound, HoldNotPending
from lms.partners.errors import (
    AccrualNotFound,
    IpNotAllowed,
    PartnerSuspended,
    ReversalExceedsAccrual,
)
from lms.payments.errors import WebhookSignatureInvalid
from lms.purchases.errors import PurchaseNotFound
from lms.redemption.errors import RedemptionNotFound, RefundExceedsCapture
from lms.wallet.errors import PassUnauthorized
from tests.api.authz_world import (
    ADMIN,
    AGENT,
    ANONYMOUS,
    BAD_TOKEN,
    DEVICE_A,
    DEVICE_B,
    FEED,
    MARKETER,
    MEMBER_A,
    MEMBER_B,
    MERGED_MEMBER,
    PARTNER_X,
    PARTNER_Y,
    PRINCIPALS,
    PROVIDER,
    REVOKED_KEY,
    STAFF,
    SUPERVISOR,
    SUSPENDED,
    WRONG_ADDRESS,
)

ALLOWED, REFUSED_401, REFUSED_403, REFUSED_404 = "allowed", "401", "403", "404"


@dataclass(frozen=True)
class Outcome:
    status: int
    kind: str  # ALLOWED or the refusal's class
    code: str | None = None  # the problem's code (errors only)
    empty: bool = False  # a 200 whose body must be an empty list: none of it is the caller's
    shows: str | None = None  # a world id the answer must list (the caller's own)
    hides: str | None = None  # a world id the answer must not list (someone else's)

    def label(self) -> str:
        text = str(self.status)
        if self.empty:
            text += " []"
        if self.shows:
            text += f" with `{self.shows}`"
        if self.hides:
            text += f" without `{self.hides}`"
        if self.code == "insufficient_scope":
            text += " scope"
        elif self.code in ("partner_suspended", "ip_not_allowed") or (
                self.code and self.kind in (ALLOWED, REFUSED_404)
                and self.code != "validation_error"):
            text += f" `{self.code}`"
        return f"**{text}**" if self.kind == ALLOWED else text


def allowed(status: int = 200, error: type[LmsError] | None = None, *, empty: bool = False,
            shows: str | None = None, hides: str | None = None) -> Outcome:
    if error is not None:
        return Outcome(error.status, ALLOWED, error.code)
    return Outcome(status, ALLOWED, empty=empty, shows=shows, hides=hides)


def refused(error: type[LmsError]) -> Outcome:
    return Outcome(error.status, str(error.status), error.code)


OK, CREATED, NO_CONTENT = allowed(200), allowed(201), allowed(204)
INVALID = allowed(error=ValidationFailed)  # the body sent is invalid on purpose
UNAUTHORIZED = refused(Unauthorized)
FORBIDDEN = refused(Forbidden)
NO_SCOPE = refused(InsufficientScope)
NO_PASS = refused(PassUnauthorized)

# Who sends no valid bearer token: the anonymous, PassKit devices (their Authorization is an
# ApplePass token), the payment provider (an HMAC signature), a made-up token, a revoked API
# key and the token of a membership closed since.
BEARERLESS = (ANONYMOUS, DEVICE_A, DEVICE_B, PROVIDER, BAD_TOKEN, REVOKED_KEY, MERGED_MEMBER)
CALL_CENTRE = (AGENT, SUPERVISOR, ADMIN)
SUPERVISORS = (SUPERVISOR, ADMIN)


def cells(allowed_cells: Mapping[str, Outcome], refusal: Outcome = FORBIDDEN,
          bearerless: Outcome = UNAUTHORIZED) -> dict[str, Outcome]:
    return {p: allowed_cells.get(p, bearerless if p in BEARERLESS else refusal)
            for p in PRINCIPALS}


def everyone(outcome: Outcome) -> dict[str, Outcome]:
    return dict.fromkeys(PRINCIPALS, outcome)


def members(a: Outcome, b: Outcome | None = None) -> dict[str, Outcome]:
    return cells({MEMBER_A: a, MEMBER_B: b or a})


def staff(roles: tuple[str, ...], outcome: Outcome,
          **per_role: Outcome) -> dict[str, Outcome]:
    return cells({r: per_role.get(r, outcome) for r in roles})


def partners(x: Outcome, y: Outcome | None = None) -> dict[str, Outcome]:
    return cells({PARTNER_X: x, PARTNER_Y: y or x}, refusal=NO_SCOPE)


def passkit(device_a: Outcome) -> dict[str, Outcome]:
    """PassKit is outside bearer authentication: only the pass's own token (device A's, for
    A's pass) is accepted; any other Authorization is refused, none at all too."""
    return {p: device_a if p == DEVICE_A else NO_PASS for p in PRINCIPALS}


Body = Any  # a JSON value, or a function of the world's ids giving one
NO_BODY = object()


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as in openapi/openapi.json
    expect: Mapping[str, Outcome]
    sends: str = ""  # what the request carries, for the reader of docs/authorization.md
    params: Mapping[str, str] = field(default_factory=dict)  # path parameter -> world id
    query: Mapping[str, str] = field(default_factory=dict)  # query parameter -> world id
    body: Body = NO_BODY
    idempotency_key: bool = False
    fresh_token: bool = False  # the call uses up the caller's token: issue one for it

    @property
    def operation(self) -> tuple[str, str]:
        return self.method, self.path

    def url(self, ids: Mapping[str, Any]) -> str:
        path = self.path
        for name, ref in self.params.items():
            path = path.replace("{" + name + "}", str(ids[ref]))
        return path

    def params_of(self, ids: Mapping[str, Any]) -> dict[str, str]:
        return {name: str(ids[ref]) for name, ref in self.query.items()}

    def json(self, ids: Mapping[str, Any]) -> Any:
        if callable(self.body):
            fn: Callable[[Mapping[str, Any]], Any] = self.body
            return fn(ids)
        return self.body


# An API key refused for its partner's state or its address is refused by the authentication
# middleware, on every endpoint behind it (public ones included), before any guard.
KEY_REFUSALS = {SUSPENDED: refused(PartnerSuspended), WRONG_ADDRESS: refused(IpNotAllowed)}
# What the middleware leaves alone: probes, and what authenticates by other means.
OUTSIDE_BEARER_AUTH = ("/health", "/ready", "/v1/payments/webhook", "/v1/passkit/")


def row(method: str, path: str, expect: Mapping[str, Outcome], sends: str = "",
        **options: Any) -> Row:
    if not path.startswith(OUTSIDE_BEARER_AUTH):
        expect = {**expect, **KEY_REFUSALS}
    return Row(method, path, expect, sends, **options)


HOLD = {"hold_id": "x_pending_hold"}
VOIDED = {"hold_id": "x_voided_hold"}
REDEMPTION = {"redemption_id": "x_redemption"}
X = {"code": "x_code"}
CARD_A = {"card": "a_card"}
A_PASS = {"deviceLibraryIdentifier": "a_device", "passTypeIdentifier": "pass_type",
          "serialNumber": "a_serial"}
DEVICE_PATH = "/v1/passkit/v1/devices/{deviceLibraryIdentifier}/registrations/"

ROWS: tuple[Row, ...] = (
    # -- public -------------------------------------------------------------------------
    row("GET", "/health", everyone(OK)),
    row("GET", "/ready", everyone(OK)),
    row("POST", "/v1/auth/register", everyone(INVALID), "body {}", body={}),
    row("POST", "/v1/auth/token", everyone(INVALID), "body {}", body={}),
    row("POST", "/v1/staff/auth/token", everyone(INVALID), "body {}", body={}),
    row("POST", "/v1/passkit/v1/log", everyone(OK), "a log line",
        body={"logs": ["authorisation matrix"]}),
    row("POST", "/v1/payments/webhook",
        {p: INVALID if p == PROVIDER else refused(WebhookSignatureInvalid)
         for p in PRINCIPALS}, "body {} (signed by the provider)", body={}),
    # -- members and staff ----------------------------------------------------------------
    row("POST", "/v1/auth/logout",
        cells({MEMBER_A: NO_CONTENT, MEMBER_B: NO_CONTENT} | dict.fromkeys(STAFF, NO_CONTENT)),
        "a token of its own", fresh_token=True),
    # -- the member's own ----------------------------------------------------------------
    row("GET", "/v1/me", members(OK)),
    row("GET", "/v1/me/balance", members(OK)),
    row("GET", "/v1/me/statement", members(OK)),
    row("GET", "/v1/me/tier", members(OK)),
    row("GET", "/v1/me/claims",
        members(allowed(shows="a_claim"), allowed(hides="a_claim"))),
    row("POST", "/v1/me/claims", members(INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/me/gifts", members(OK)),
    row("POST", "/v1/me/gifts", members(INVALID), "body {}", body={}, idempotency_key=True),
    row("GET", "/v1/me/gifts/terms", members(OK)),
    row("GET", "/v1/me/family", members(OK)),
    row("POST", "/v1/me/family", members(allowed(error=AlreadyInPool)),
        "both head a pool already", idempotency_key=True),
    row("POST", "/v1/me/family/invitations", members(INVALID), "body {}", body={},
        idempotency_key=True),
    row("POST", "/v1/me/family/invitations/{invitation_id}/accept",
        members(allowed(error=AlreadyInPool), refused(InvitationNotFound)),
        "B's pool's invitation to A", params={"invitation_id": "a_pending_invitation"},
        idempotency_key=True),
    row("POST", "/v1/me/family/invitations/{invitation_id}/decline",
        members(allowed(error=InvitationNotPending), refused(InvitationNotFound)),
        "an invitation A declined", params={"invitation_id": "a_declined_invitation"},
        idempotency_key=True),
    row("POST", "/v1/me/family/members/{member_id}/remove",
        members(allowed(error=HeadCannotLeave), refused(PoolMemberNotFound)),
        "A, head of A's pool", params={"member_id": "a_id"}, idempotency_key=True),
    row("POST", "/v1/me/family/leave", members(allowed(error=HeadCannotLeave)),
        "both are heads", idempotency_key=True),
    row("POST", "/v1/me/family/dissolve", members(allowed(error=PoolHasHolds)),
        "both pools have miles held", idempotency_key=True),
    row("GET", "/v1/me/mile-purchases",
        members(allowed(shows="a_mile_purchase"), allowed(hides="a_mile_purchase"))),
    row("POST", "/v1/me/mile-purchases", members(INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/me/mile-purchases/{purchase_id}",
        members(OK, refused(PurchaseNotFound)), "A's purchase",
        params={"purchase_id": "a_mile_purchase"}),
    row("GET", "/v1/me/status-purchases",
        members(allowed(shows="a_status_purchase"), allowed(hides="a_status_purchase"))),
    row("POST", "/v1/me/status-purchases", members(INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/me/status-purchases/offers", members(OK)),
    row("GET", "/v1/me/status-purchases/{purchase_id}",
        members(OK, refused(PurchaseNotFound)), "A's purchase",
        params={"purchase_id": "a_status_purchase"}),
    row("POST", "/v1/me/promotions/{code}/registration",
        members(allowed(error=RegistrationNotOpen)),
        "a promotion without registration", params={"code": "open_promotion"}),
    row("POST", "/v1/me/redemption-codes", members(INVALID), "partnerCode: 5",
        body={"partnerCode": 5}),
    row("GET", "/v1/me/redemption-codes/status", members(OK)),
    row("POST", "/v1/me/award-bookings", members(INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/me/wallet/apple", members(OK)),
    row("GET", "/v1/me/wallet/google", members(OK)),
    # -- PassKit web service (the pass's own token) -------------------------------------------
    row("POST", DEVICE_PATH + "{passTypeIdentifier}/{serialNumber}", passkit(OK),
        "A's pass on A's registered device", params=A_PASS,
        body={"pushToken": "push-again"}),
    row("DELETE", DEVICE_PATH + "{passTypeIdentifier}/{serialNumber}", passkit(OK),
        "A's pass on A's old device",
        params=A_PASS | {"deviceLibraryIdentifier": "a_old_device"}),
    row("GET", DEVICE_PATH + "{passTypeIdentifier}",
        {p: OK if p in (ANONYMOUS, PROVIDER, DEVICE_A) else NO_PASS for p in PRINCIPALS},
        "A's device (Apple sends no Authorization here; one sent must be the pass's)",
        params={"deviceLibraryIdentifier": "a_device", "passTypeIdentifier": "pass_type"}),
    row("GET", "/v1/passkit/v1/passes/{passTypeIdentifier}/{serialNumber}", passkit(OK),
        "A's pass", params={"passTypeIdentifier": "pass_type", "serialNumber": "a_serial"}),
    # -- partners (API key scopes) ------------------------------------------------------
    row("POST", "/v1/partner/accruals", partners(INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/partner/accruals/{partner_txn_id}",
        partners(OK, refused(AccrualNotFound)), "X's accrual",
        params={"partner_txn_id": "x_txn"}),
    row("POST", "/v1/partner/accruals/{partner_txn_id}/reversal",
        partners(allowed(error=ReversalExceedsAccrual), refused(AccrualNotFound)),
        "X's accrual, more than it was", params={"partner_txn_id": "x_txn"},
        body={"amount": 10**12}, idempotency_key=True),
    row("POST", "/v1/partner/redemption-quotes", partners(INVALID), "body {}", body={}),
    row("POST", "/v1/partner/holds", partners(INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/partner/holds",
        partners(allowed(shows="x_pending_hold"), allowed(empty=True)),
        "X's order reference", query={"orderReference": "x_order"}),
    row("GET", "/v1/partner/holds/{hold_id}", partners(OK, refused(HoldNotFound)),
        "X's pending hold", params=HOLD),
    row("POST", "/v1/partner/holds/{hold_id}/capture",
        partners(allowed(error=HoldNotPending), refused(HoldNotFound)), "X's voided hold",
        params=VOIDED, body={}, idempotency_key=True),
    row("POST", "/v1/partner/holds/{hold_id}/void",
        partners(allowed(error=HoldNotPending), refused(HoldNotFound)), "X's voided hold",
        params=VOIDED, idempotency_key=True),
    row("GET", "/v1/partner/redemptions",
        partners(allowed(shows="x_redemption"), allowed(empty=True)),
        "X's order reference", query={"orderReference": "x_redemption_order"}),
    row("GET", "/v1/partner/redemptions/{redemption_id}",
        partners(OK, refused(RedemptionNotFound)), "X's redemption", params=REDEMPTION),
    row("POST", "/v1/partner/redemptions/{redemption_id}/refunds",
        partners(allowed(error=RefundExceedsCapture), refused(RedemptionNotFound)),
        "X's redemption, more miles than captured", params=REDEMPTION,
        body={"miles": 10**9}, idempotency_key=True),
    row("GET", "/v1/partner/statements/{month}", partners(OK),
        "this month (each partner gets its own)", params={"month": "this_month"}),
    # -- the airline's flight feed (scope flights) ----------------------------------------
    row("POST", "/v1/activities/flights:batch", cells({FEED: INVALID}, refusal=NO_SCOPE),
        "body {}", body={}),
    row("POST", "/v1/activities/flights/{ticket_number}/{coupon_number}/reversal",
        cells({FEED: INVALID}, refusal=NO_SCOPE), "A's flown coupon, reason: 5",
        params={"ticket_number": "a_ticket", "coupon_number": "a_coupon"}, body={"reason": 5},
        idempotency_key=True),
    # -- staff -----------------------------------------------------------------------------
    row("GET", "/v1/staff/me", staff(STAFF, OK)),
    row("GET", "/v1/staff/members", staff(CALL_CENTRE, OK), "A's card",
        query={"cardNumber": "a_card"}),
    row("GET", "/v1/staff/members/{card}", staff(CALL_CENTRE, OK), "A's card",
        params=CARD_A),
    row("GET", "/v1/staff/members/{card}/statement", staff(CALL_CENTRE, OK), "A's card",
        params=CARD_A),
    row("POST", "/v1/staff/members/{card}/adjustments", staff(CALL_CENTRE, INVALID),
        "A's card, body {}", params=CARD_A, body={}, idempotency_key=True),
    row("POST", "/v1/staff/members/{card}/lock", staff(CALL_CENTRE, INVALID),
        "A's card, body {}", params=CARD_A, body={}, idempotency_key=True),
    row("POST", "/v1/staff/members/{card}/unlock", staff(CALL_CENTRE, INVALID),
        "A's card, body {}", params=CARD_A, body={}, idempotency_key=True),
    row("POST", "/v1/staff/members/{card}/merge", staff(SUPERVISORS, INVALID),
        "A's card, body {}", params=CARD_A, body={}, idempotency_key=True),
    row("GET", "/v1/staff/adjustments",
        staff(CALL_CENTRE, allowed(shows="supervisor_adjustment"),
              agent=allowed(hides="supervisor_adjustment")),
        "agents see their own"),
    row("GET", "/v1/staff/adjustments/{adjustment_id}",
        staff(CALL_CENTRE, OK, agent=refused(AdjustmentNotFound)),
        "the supervisor's adjustment (agents see their own)",
        params={"adjustment_id": "supervisor_adjustment"}),
    row("POST", "/v1/staff/adjustments/{adjustment_id}/approve", staff(SUPERVISORS, INVALID),
        "body {}", params={"adjustment_id": "supervisor_adjustment"}, body={},
        idempotency_key=True),
    row("POST", "/v1/staff/adjustments/{adjustment_id}/reject", staff(SUPERVISORS, INVALID),
        "body {}", params={"adjustment_id": "supervisor_adjustment"}, body={},
        idempotency_key=True),
    row("POST", "/v1/staff/entries/{entry_id}/reversal", staff(SUPERVISORS, INVALID),
        "A's flight credit, body {}", params={"entry_id": "a_flight_entry"}, body={},
        idempotency_key=True),
    row("GET", "/v1/staff/reason-codes", staff(CALL_CENTRE, OK)),
    row("POST", "/v1/staff/reason-codes", staff((ADMIN,), INVALID), "body {}", body={},
        idempotency_key=True),
    row("POST", "/v1/staff/reason-codes/{code}/activate", staff((ADMIN,), OK),
        "an active code of the matrix's own", params={"code": "reason_code_on"}),
    row("POST", "/v1/staff/reason-codes/{code}/deactivate", staff((ADMIN,), OK),
        "a code of the matrix's own", params={"code": "reason_code_off"}),
    row("GET", "/v1/staff/adjustment-limits", staff(CALL_CENTRE, OK)),
    row("PUT", "/v1/staff/adjustment-limits/{role}", staff((ADMIN,), INVALID),
        "agent, body {}", params={"role": "agent_role"}, body={}),
    row("GET", "/v1/staff/audit", staff(SUPERVISORS, OK)),
    row("GET", "/v1/admin/purchases/refunds-due", staff(SUPERVISORS, OK)),
    # -- admin -------------------------------------------------------------------------------
    row("GET", "/v1/admin/partners", staff((ADMIN,), OK)),
    row("POST", "/v1/admin/partners", staff((ADMIN,), INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/admin/partners/{code}", staff((ADMIN,), OK), "X", params=X),
    row("POST", "/v1/admin/partners/{code}/earn-rates", staff((ADMIN,), INVALID),
        "X, body {}", params=X, body={}, idempotency_key=True),
    row("GET", "/v1/admin/partners/{code}/api-keys", staff((ADMIN,), OK), "X", params=X),
    row("POST", "/v1/admin/partners/{code}/api-keys", staff((ADMIN,), INVALID),
        "X, body {}", params=X, body={}),
    row("POST", "/v1/admin/partners/{code}/api-keys/rotate", staff((ADMIN,), INVALID),
        "X, overlapSeconds: -1", params=X, body={"overlapSeconds": -1}),
    row("POST", "/v1/admin/api-keys/{prefix}/revoke", staff((ADMIN,), OK),
        "X's key revoked before", params={"prefix": "x_revoked_key_prefix"}),
    row("PUT", "/v1/admin/partners/{code}/webhook", staff((ADMIN,), INVALID),
        "X, body {}", params=X, body={}),
    row("POST", "/v1/admin/partners/{code}/webhook-secret", staff((ADMIN,), CREATED),
        "X (a new secret)", params=X),
    row("GET", "/v1/admin/partners/{code}/webhook-deliveries", staff((ADMIN,), OK), "X",
        params=X),
    row("GET", "/v1/admin/programme/earn-rules", staff((ADMIN,), OK)),
    row("POST", "/v1/admin/programme/earn-rules", staff((ADMIN,), INVALID), "body {}",
        body={}, idempotency_key=True),
    row("GET", "/v1/admin/programme/promotions", staff((ADMIN,), OK)),
    row("POST", "/v1/admin/programme/promotions", staff((ADMIN,), INVALID), "body {}",
        body={}, idempotency_key=True),
    row("GET", "/v1/admin/programme/tiers", staff((ADMIN,), OK)),
    row("POST", "/v1/admin/programme/tiers", staff((ADMIN,), INVALID), "body {}", body={},
        idempotency_key=True),
    row("GET", "/v1/admin/programme/policies", staff((ADMIN,), OK)),
    row("POST", "/v1/admin/programme/policies", staff((ADMIN,), INVALID), "body {}",
        body={}, idempotency_key=True),
)

SHORT = {BAD_TOKEN: "bad token", REVOKED_KEY: "revoked key", MERGED_MEMBER: "merged",
         SUSPENDED: "susp.",
         WRONG_ADDRESS: "off net",
         ANONYMOUS: "anon", MEMBER_A: "mem A", MEMBER_B: "mem B", PARTNER_X: "ptn X",
         PARTNER_Y: "ptn Y", FEED: "feed", AGENT: "agent", SUPERVISOR: "super",
         MARKETER: "mkt", ADMIN: "admin", DEVICE_A: "dev A", DEVICE_B: "dev B",
         PROVIDER: "provider"}

PREAMBLE = """\
# Authorisation matrix

Who may call what: every operation of [openapi/openapi.json](../openapi/openapi.json) against
every kind of caller, with the answer each gets. The table is the data of
`tests/api/test_authorization_matrix.py`, which sends every cell's request to the app and fails
on any answer that differs (an unexpected allow above all), on any error that is not
`application/problem+json`, on an operation the document has and the table lacks, or the other
way round, and when this page is not the table (regenerate it with
`uv run python -m tests.api.authz_matrix > docs/authorization.md`).

## The callers

- **anon**: nobody signed in; no credentials.
- **mem A**, **mem B**: two members, with bearer access tokens (`POST /v1/auth/token`); A
  owns the resources the paths name.
- **ptn X**, **ptn Y**: two partners, with API keys of scopes `accrue`, `redeem` and
  `statements`; X owns the holds, redemptions and accruals the paths name.
- **feed**: the airline's flight feed, an API key with scope `flights` only.
- **agent**, **super**, **mkt**, **admin**: staff users of the roles agent, supervisor,
  marketer and admin, with bearer access tokens (`POST /v1/staff/auth/token`).
- **dev A**, **dev B**: PassKit devices holding member A's / member B's Apple pass, sending
  `Authorization: ApplePass <the pass's token>`.
- **provider**: the payment provider, signing the body (`LMS-Signature`), no Authorization.
- **bad token**: a made-up bearer token; **revoked key**: an API key of X's, revoked;
  **merged**: the access token of a member merged since into another membership (closed).
- **susp.**: the API key of a partner whose contract is suspended; **off net**: a key of X's
  whose IP allow-list (203.0.113.0/24) does not hold the caller's address. Both are refused by
  the authentication middleware on every endpoint behind it, public ones included.

The world (tests/api/authz_world.py): A and B each head a family pool whose miles are held at a
partner; A has a pending invitation from B's pool and one she declined from a third pool; at
partner X, A has a pending hold, a voided hold, a captured hold (a redemption) and an accrual;
the feed credited a flight of A's; A has a mile purchase and a status purchase, a gift sent to
B and a claim; the supervisor made an adjustment of A's; A's pass is registered on a device;
a duplicate membership was merged into another after signing in.

## Reading a cell

- **bold**: allowed — the request got past authentication and authorisation (and, for a
  resource, ownership). 2xx, or an answer only such a caller can get: **422** (the request
  sends an invalid body on purpose, so that nothing changes), **409 `code`** (a business rule
  refuses it, again so that nothing changes), **200 []** (a list with nothing of the caller's),
  **200 with `id`** / **without `id`** (a list that must / must not hold that resource of the
  world: the owner sees it, the others do not).
- 401: no valid credentials for this endpoint: `unauthorized`; on the PassKit endpoints
  `pass_unauthorized`; on the payment webhook `webhook_signature_invalid`.
- 403: authenticated, but the role may not (`forbidden`); 403 scope: the API key lacks the
  scope (`insufficient_scope`); 403 `partner_suspended`, 403 `ip_not_allowed`: the key is
  refused whatever the endpoint.
- 404 `code`: the endpoint is the caller's to use, but the resource is not theirs: the same
  answer as for an id that does not exist, and never its data.

Requests that change state are built so that the allowed cells change nothing another cell
reads: invalid bodies, business refusals, or resources of their own (a fresh token for
sign-out, a device of its own to unregister, reason codes of the matrix's own, a key revoked
before). Partner X's webhook secret is the one thing rotated.

## The matrix

"""


def render() -> str:
    head = "| operation | request | " + " | ".join(SHORT[p] for p in PRINCIPALS) + " |"
    rule = "| --- | --- | " + " | ".join("---" for _ in PRINCIPALS) + " |"
    lines = [PREAMBLE + head, rule]
    for r in ROWS:
        path = r.path.replace("|", "\\|")
        lines.append(f"| `{r.method} {path}` | {r.sends} | "
                     + " | ".join(r.expect[p].label() for p in PRINCIPALS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
