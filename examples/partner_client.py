"""An example partner client: a mixed cash-and-miles order from quote to refund.

    python examples/partner_client.py http://127.0.0.1:8000 lms_... [card number] \\
        --email ada.lovelace@example.com --password demo-member-pass

It runs, printing each step: a quote, a hold, a partial capture, a refund of part of what
was captured, a second hold that is voided, and the month's statement.

A real partner gets the member's one-time code from the member (typed at the checkout, after
the member created it in the programme's app). DEMO SHORTCUT: this script signs in as the
member with e-mail and password and creates the codes itself (`POST /v1/me/redemption-codes`).

Every mutating call sends an Idempotency-Key; a partner that retries after a timeout sends
the same key again and gets the first answer back.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx


class Api:
    """The partner API with one key; raises on any answer other than the expected one."""

    def __init__(self, client: httpx.Client, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, *, body: dict[str, Any] | None = None,
             expect: int = 200, idempotent: bool = False) -> Any:
        headers = dict(self.headers)
        if idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        response = self.client.request(method, path, json=body, headers=headers)
        if response.status_code != expect:
            raise SystemExit(f"{method} {path} answered {response.status_code}: "
                             f"{response.text}")
        return response.json()


def member_headers(client: httpx.Client, email: str, password: str) -> dict[str, str]:
    """DEMO SHORTCUT: sign in as the member."""
    token = client.post("/v1/auth/token", json={"email": email, "password": password})
    token.raise_for_status()
    return {"Authorization": f"Bearer {token.json()['accessToken']}"}


def member_code(client: httpx.Client, email: str, password: str) -> str:
    """DEMO SHORTCUT: sign in as the member and create a one-time code for the partner."""
    code = client.post("/v1/me/redemption-codes", json={},
                       headers=member_headers(client, email, password))
    code.raise_for_status()
    value: str = code.json()["code"]
    return value


def member_card(client: httpx.Client, email: str, password: str) -> str:
    """DEMO SHORTCUT: the member's card number, from the member's own profile."""
    me = client.get("/v1/me", headers=member_headers(client, email, password))
    me.raise_for_status()
    card: str = me.json()["cardNumber"]
    return card


def show(step: str, payload: Any) -> None:
    print(f"== {step}")
    print(json.dumps(payload, indent=2, sort_keys=True))


def statement_step(api: Api, month: str) -> None:
    """The partner's settlement statement for ``month`` (YYYY-MM), as JSON and as CSV
    (`GET /v1/partner/statements/{YYYY-MM}`, `?format=csv`; the key needs scope
    ``statements``). The current month is open: computed from the ledger on each call."""
    response = api.client.get(f"/v1/partner/statements/{month}", headers=api.headers)
    if response.status_code == 403:
        print(f"== statement {month}: this key lacks the scope statements")
        return
    if response.status_code != 200:
        raise SystemExit(f"statement answered {response.status_code}: {response.text}")
    show(f"statement {month}", response.json())
    as_csv = api.client.get(f"/v1/partner/statements/{month}", params={"format": "csv"},
                            headers=api.headers)
    if as_csv.status_code != 200:
        raise SystemExit(f"statement CSV answered {as_csv.status_code}: {as_csv.text}")
    print(f"== statement {month} (CSV)")
    print(as_csv.text, end="")


def run(api: Api, client: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    order = args.order_amount
    if args.card is None:
        args.card = member_card(client, args.email, args.password)
    reference = f"ORDER-{uuid.uuid4().hex[:10]}"

    code = member_code(client, args.email, args.password)
    quote = api.call("POST", "/v1/partner/redemption-quotes", body={
        "cardNumber": args.card, "memberCode": code, "orderAmount": order,
        "currency": args.currency})
    show("quote", quote)
    if quote["maxMiles"] < 2:
        raise SystemExit("The member has too few miles for this example")

    # Pay half of what the miles may pay for; the quote's code is still good for the hold.
    miles = quote["maxMiles"] // 2
    cash = order - miles * quote["valuePerMileMilliMinor"] // 1000
    hold = api.call("POST", "/v1/partner/holds", expect=201, idempotent=True, body={
        "cardNumber": args.card, "memberCode": code, "miles": miles, "cashAmount": cash,
        "currency": args.currency, "orderReference": reference, "ttlSeconds": 900})
    show("hold", hold)

    redemption = api.call("POST", f"/v1/partner/holds/{hold['id']}/capture", expect=201,
                          idempotent=True, body={"miles": max(1, miles // 2)})
    show("partial capture (the rest of the hold is released)", redemption)

    refund = api.call("POST", f"/v1/partner/redemptions/{redemption['id']}/refunds",
                      expect=201, idempotent=True,
                      body={"miles": max(1, redemption["miles"] // 2),
                            "reason": "one item returned"})
    show("refund", refund)
    show("redemption after the refund",
         api.call("GET", f"/v1/partner/redemptions/{redemption['id']}"))

    second_code = member_code(client, args.email, args.password)
    second = api.call("POST", "/v1/partner/holds", expect=201, idempotent=True, body={
        "cardNumber": args.card, "memberCode": second_code, "miles": 1,
        "cashAmount": order - quote["valuePerMileMilliMinor"] // 1000,
        "currency": args.currency, "orderReference": reference + "-2", "ttlSeconds": 900})
    show("second hold", second)
    voided = api.call("POST", f"/v1/partner/holds/{second['id']}/void", idempotent=True)
    show("void", voided)

    statement_step(api, datetime.now(UTC).strftime("%Y-%m"))
    return {"hold": hold, "redemption": redemption, "refund": refund, "voided": voided}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8000")
    parser.add_argument("api_key", help="the partner's API key (scopes redeem, and "
                                        "statements for the last step)")
    parser.add_argument("card", nargs="?",
                        help="the member's card number (DEMO SHORTCUT: read from the "
                             "member's profile when absent)")
    parser.add_argument("--email", required=True,
                        help="DEMO SHORTCUT: the member's e-mail, to create the codes")
    parser.add_argument("--password", required=True,
                        help="DEMO SHORTCUT: the member's password")
    parser.add_argument("--order-amount", type=int, default=10_000,
                        help="order total in minor units (default 10000)")
    parser.add_argument("--currency", default="EUR")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with httpx.Client(base_url=args.base_url.rstrip("/"), timeout=30) as client:
        run(Api(client, args.api_key), client, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
