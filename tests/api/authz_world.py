"""The fixture world of the authorisation matrix (tests/api/authz_matrix.py): two members,
two partners, the flight feed, staff of every role, two wallet devices and the payment
provider, with resources owned by member A and partner X whose real ids the matrix's paths
name.

Built once per test module through the API where the API can do it (registration, family
pools, codes, holds, captures, accruals, flights, adjustments, keys, webhooks, wallet
passes), directly in the database where it needs a third party (purchases, which the payment
provider opens).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind
from lms.payments import signature
from lms.settings import Settings
from lms.wallet.certs import DEV_GOOGLE_ACCOUNT, ensure_dev_certs
from tests.callcentre.support import staff_user
from tests.factories import bearer
from tests.family.support import load_demo_rules, make_member
from tests.partners.support import accrual_body, issue_key, make_partner
from tests.redemption.support import funded_member, hold_body

ANONYMOUS = "anonymous"
MEMBER_A = "member A"
MEMBER_B = "member B"
PARTNER_X = "partner X"
PARTNER_Y = "partner Y"
FEED = "flight feed"
AGENT = "agent"
SUPERVISOR = "supervisor"
MARKETER = "marketer"
ADMIN = "admin"
DEVICE_A = "device A"
DEVICE_B = "device B"
PROVIDER = "payment provider"
BAD_TOKEN = "bad token"
REVOKED_KEY = "revoked key"
SUSPENDED = "suspended partner"
WRONG_ADDRESS = "key off its network"
MERGED_MEMBER = "merged member"

PRINCIPALS = (ANONYMOUS, MEMBER_A, MEMBER_B, PARTNER_X, PARTNER_Y, FEED, AGENT, SUPERVISOR,
              MARKETER, ADMIN, DEVICE_A, DEVICE_B, PROVIDER, BAD_TOKEN, REVOKED_KEY,
              MERGED_MEMBER, SUSPENDED, WRONG_ADDRESS)
MEMBERS = (MEMBER_A, MEMBER_B)
PARTNERS = (PARTNER_X, PARTNER_Y)
STAFF = (AGENT, SUPERVISOR, MARKETER, ADMIN)
PASS_TYPE = "pass.com.example.lms.authz"
PARTNER_SCOPES = ["accrue", "redeem", "statements"]


def wallet_settings(settings: Settings, data_dir: Path) -> Settings:
    """The test settings with development wallet certificates, so that members get Apple
    passes (whose tokens the PassKit principals use) and Google links."""
    configured = settings.model_copy(update={
        "data_dir": data_dir, "apple_pass_type_identifier": PASS_TYPE,
        "apple_team_identifier": "TEAMAUTHZ1", "public_base_url": "https://lms.example.com",
        "google_service_account_file": data_dir / "wallet" / DEV_GOOGLE_ACCOUNT})
    ensure_dev_certs(configured)
    return configured


@dataclass
class World:
    client: httpx.AsyncClient
    db: Database
    settings: Settings
    # principal -> the Authorization header value it calls with (none for the anonymous
    # and the payment provider)
    authorization: dict[str, str] = field(default_factory=dict)
    # name -> a real id or value, named by the matrix's paths, queries and bodies
    ids: dict[str, Any] = field(default_factory=dict)
    staff_ids: dict[str, int] = field(default_factory=dict)
    member_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, principal: str, body: bytes) -> dict[str, str]:
        if principal == PROVIDER:
            return {signature.HEADER: signature.sign(self.settings.payment_webhook_secret,
                                                     body)}
        value = self.authorization.get(principal)
        return {} if value is None else {"Authorization": value}

    async def fresh_headers(self, principal: str, body: bytes) -> dict[str, str]:
        """Like headers(), with a newly issued access token for members and staff: for the
        calls that use up the caller's token (sign-out)."""
        if principal in MEMBERS:
            issued = Principal("member", self.member_ids[principal], Role.MEMBER)
        elif principal in STAFF:
            issued = Principal("staff", self.staff_ids[principal], Role(principal))
        else:
            return self.headers(principal, body)

        async def work(session: AsyncSession) -> str:
            return (await AuthService(session, self.settings).issue_token(issued)).token

        return bearer(await self.db.transaction(work))


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.text)
    return response.json() if response.content else None


def idem(headers: dict[str, str]) -> dict[str, str]:
    return headers | {"Idempotency-Key": str(uuid.uuid4())}


async def build_world(client: httpx.AsyncClient, db: Database, settings: Settings,
                      system: SystemAccounts) -> World:
    world = World(client, db, settings)
    ids = world.ids
    await load_demo_rules(db)

    for role in STAFF:
        user = await staff_user(db, settings, role)
        world.staff_ids[role] = user["id"]
        world.authorization[role] = f"Bearer {user['token']}"
    admin = bearer(world.authorization[ADMIN].split(" ", 1)[1])
    supervisor = bearer(world.authorization[SUPERVISOR].split(" ", 1)[1])

    # Partners X and Y: accrual, redemption and statements; the airline's feed: flights.
    keys: dict[str, str] = {}
    for name in (*PARTNERS, FEED):
        partner = await make_partner(client, admin, valuePerMileMilliMinor=1000,
                                     minCashShareBp=0)
        scopes = ["flights"] if name == FEED else PARTNER_SCOPES
        keys[name] = await issue_key(client, admin, partner["code"], scopes,
                                     rateLimitPerMinute=1_000_000)
        world.authorization[name] = f"Bearer {keys[name]}"
        ids[{PARTNER_X: "x_code", PARTNER_Y: "y_code", FEED: "feed_code"}[name]] = \
            partner["code"]
    x, y = bearer(keys[PARTNER_X]), bearer(keys[PARTNER_Y])
    spare = await issue_key(client, admin, ids["x_code"], ["accrue"])
    ids["x_revoked_key_prefix"] = spare.split("_")[1]
    ok(await client.post(f"/v1/admin/api-keys/{ids['x_revoked_key_prefix']}/revoke",
                         headers=admin))
    world.authorization[REVOKED_KEY] = f"Bearer {spare}"
    world.authorization[BAD_TOKEN] = f"Bearer not-a-token-{uuid.uuid4().hex}"
    # A key of X's usable only from a network the test client is not on, and the key of a
    # partner whose contract is suspended: both refused before any route is reached.
    world.authorization[WRONG_ADDRESS] = "Bearer " + await issue_key(
        client, admin, ids["x_code"], PARTNER_SCOPES, ipAllowList=["203.0.113.0/24"])
    suspended = await make_partner(client, admin)
    world.authorization[SUSPENDED] = "Bearer " + await issue_key(
        client, admin, suspended["code"], PARTNER_SCOPES)
    await suspend(db, suspended["code"])
    ok(await client.put(f"/v1/admin/partners/{ids['x_code']}/webhook", headers=admin,
                        json={"url": "https://partner-x.example.com/hooks"}))

    # Members A and B, each with personal miles and at the head of a family pool that has
    # miles held at a partner (a pool with holds cannot be dissolved).
    members: dict[str, dict[str, Any]] = {}
    for name, shop, partner_headers in ((MEMBER_A, "x_code", x), (MEMBER_B, "y_code", y)):
        member = await funded_member(client, db, system, 100_000)
        members[name] = member
        world.member_ids[name] = member["member"]["id"]
        world.authorization[name] = f"Bearer {member['accessToken']}"
        headers = bearer(member["accessToken"])
        ok(await client.post("/v1/me/family", headers=idem(headers)), 201)
        await fund_pool(db, system, member["member"]["id"], 20_000)
        code = ok(await client.post("/v1/me/redemption-codes", headers=headers, json={
            "partnerCode": ids[shop], "fromPool": True}), 201)["code"]
        ok(await client.post("/v1/partner/holds", headers=idem(partner_headers),
                             json=hold_body(member["card"], code)), 201)
    a, b = members[MEMBER_A], members[MEMBER_B]
    a_headers, b_headers = bearer(a["accessToken"]), bearer(b["accessToken"])
    ids["a_card"], ids["a_id"], ids["b_card"] = a["card"], a["member"]["id"], b["card"]

    # Invitations to A: one pending (from B's pool), one A has declined (from D's pool).
    invitation = ok(await client.post("/v1/me/family/invitations", headers=idem(b_headers),
                                      json={"cardNumber": a["card"]}), 201)
    ids["a_pending_invitation"] = invitation["id"]
    d = await make_member(db, system, settings, first_name="Dora", last_name="Third")
    ok(await client.post("/v1/me/family", headers=d.key()), 201)
    invitation = ok(await client.post("/v1/me/family/invitations", headers=d.key(),
                                      json={"cardNumber": a["card"]}), 201)
    ids["a_declined_invitation"] = invitation["id"]
    ok(await client.post(f"/v1/me/family/invitations/{invitation['id']}/decline",
                         headers=idem(a_headers)))

    # A's redemptions at X: a pending hold, a voided hold, a captured one (a redemption).
    holds = []
    for _ in range(3):
        code = ok(await client.post("/v1/me/redemption-codes", headers=a_headers,
                                    json={"partnerCode": ids["x_code"]}), 201)["code"]
        holds.append(ok(await client.post("/v1/partner/holds", headers=idem(x),
                                          json=hold_body(a["card"], code)), 201))
    ids["x_pending_hold"], ids["x_order"] = holds[0]["id"], holds[0]["orderReference"]
    ids["x_voided_hold"] = holds[1]["id"]
    ok(await client.post(f"/v1/partner/holds/{holds[1]['id']}/void", headers=idem(x)))
    redemption = ok(await client.post(f"/v1/partner/holds/{holds[2]['id']}/capture",
                                      headers=idem(x), json={}), 201)
    ids["x_redemption"] = redemption["id"]
    ids["x_redemption_order"] = holds[2]["orderReference"]

    # A's purchase at X (an accrual) and a flown flight from the airline's feed.
    accrual = accrual_body(a["card"])
    ok(await client.post("/v1/partner/accruals", headers=idem(x), json=accrual), 201)
    ids["x_txn"] = accrual["partnerTxnId"]
    ids["a_ticket"] = f"0742{uuid.uuid4().int % 10**9:09d}"
    flown = ok(await client.post("/v1/activities/flights:batch", headers=bearer(keys[FEED]),
                                 json={"coupons": [{
                                     "ticketNumber": ids["a_ticket"], "couponNumber": 1,
                                     "cardNumber": a["card"],
                                     "flightDate": (date.today() - timedelta(days=7)).isoformat(),
                                     "marketingCarrier": "LM", "operatingCarrier": "LM",
                                     "flightNumber": "117", "origin": "LHR",
                                     "destination": "JFK", "bookingClass": "Y"}]}))
    [outcome] = flown["outcomes"]
    assert outcome["status"] == "credited", outcome
    ids["a_flight_entry"] = outcome["entryId"]

    # A gift from A to B, and a claim of A's.
    ok(await client.post("/v1/me/gifts", headers=idem(a_headers), json={
        "recipientCardNumber": b["card"], "recipientLastName": b["member"]["lastName"],
        "miles": 1000}), 201)
    ids["a_claim"] = ok(await client.post("/v1/me/claims", headers=idem(a_headers), json={
        "ticketNumber": f"0743{uuid.uuid4().int % 10**9:09d}", "flightNumber": "LM117",
        "flightDate": (date.today() - timedelta(days=3)).isoformat()}), 201)["id"]

    # A duplicate membership merged by the supervisor into another: closed, it keeps the
    # token it had signed in with, which must no longer work.
    duplicate = await funded_member(client, db, system, 500)
    target = await funded_member(client, db, system, 500)
    ok(await client.post(f"/v1/staff/members/{duplicate['card']}/merge",
                         headers=idem(supervisor), json={
                             "intoCardNumber": target["card"], "reason": "Duplicate"}))
    world.authorization[MERGED_MEMBER] = f"Bearer {duplicate['accessToken']}"

    # The call centre: an adjustment of A's made by the supervisor (an agent sees only their
    # own), and reason codes of the matrix's own to switch on and off.
    adjustment = ok(await client.post(
        f"/v1/staff/members/{a['card']}/adjustments", headers=idem(supervisor),
        json={"direction": "credit", "amount": 100, "reasonCode": "GOODWILL",
              "comment": "Delayed flight"}), 201)
    ids["supervisor_adjustment"] = adjustment["id"]
    for name in ("reason_code_on", "reason_code_off"):
        ids[name] = f"AZ{uuid.uuid4().hex[:8].upper()}"
        ok(await client.post("/v1/staff/reason-codes", headers=idem(admin), json={
            "code": ids[name], "description": "Authorisation matrix"}), 201)

    ids["a_mile_purchase"], ids["a_status_purchase"] = await add_purchases(db, a)

    # Wallet passes: A's and B's devices hold their own pass's token; A's pass is registered
    # on device "a-phone" (and on "a-old-phone", which the matrix unregisters).
    for name, signed_in in members.items():
        response = await client.get("/v1/me/wallet/apple",
                                    headers=bearer(signed_in["accessToken"]))
        pass_json = json.loads(unzip(ok_bytes(response))["pass.json"])
        device = DEVICE_A if name == MEMBER_A else DEVICE_B
        world.authorization[device] = f"ApplePass {pass_json['authenticationToken']}"
        if name == MEMBER_A:
            ids["a_serial"] = pass_json["serialNumber"]
    ids["pass_type"] = PASS_TYPE
    ids["a_device"], ids["a_old_device"] = "a-phone-" + uuid.uuid4().hex[:8], \
        "a-old-phone-" + uuid.uuid4().hex[:8]
    for device in (ids["a_device"], ids["a_old_device"]):
        ok(await client.post(
            f"/v1/passkit/v1/devices/{device}/registrations/{PASS_TYPE}/{ids['a_serial']}",
            headers={"Authorization": world.authorization[DEVICE_A]},
            json={"pushToken": "push-" + device}), 201)
    ids["this_month"] = datetime.now(UTC).strftime("%Y-%m")
    ids["a_coupon"], ids["agent_role"] = 1, "agent"
    ids["open_promotion"] = "WELCOME-1000"  # the demo's, open to all without registration
    return world


def ok_bytes(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    return response.content


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def suspend(db: Database, code: str) -> None:
    """In the database: no endpoint or command suspends a partner (yet)."""
    async def work(session: AsyncSession) -> None:
        await session.execute(text("UPDATE partners SET status = 'suspended' WHERE code = :c"),
                              {"c": code})

    await db.transaction(work)


async def fund_pool(db: Database, system: SystemAccounts, head_id: int, miles: int) -> None:
    async def work(session: AsyncSession) -> None:
        account = (await session.execute(text(
            "SELECT account_id FROM family_pools WHERE head_id = :h AND status = 'active'"),
            {"h": head_id})).scalar_one()
        await Ledger(session, system).credit(account, miles, kind=EntryKind.ACCRUAL,
                                             actor=Actor("system", "tests"))

    await db.transaction(work)


async def add_purchases(db: Database, member: dict[str, Any]) -> tuple[int, int]:
    """A pending mile purchase and a pending status purchase of the member, as the purchase
    service records them once the payment provider has answered."""
    async def work(session: AsyncSession) -> tuple[int, int]:
        found = []
        for kind, miles, tier in (("miles", 5000, None), ("status", None, "SILVER")):
            reference = f"AZ-{uuid.uuid4().hex[:16]}"
            found.append((await session.execute(text(
                "INSERT INTO purchases (reference, member_id, kind, miles, tier, amount_minor,"
                " currency, cap_year, provider_payment_id, payment_url, expires_at) VALUES "
                "(:ref, :member, :kind, :miles, :tier, 15000, 'EUR', :year, :payment, "
                ":url, now() + interval '1 day') RETURNING id"),
                {"ref": reference, "member": member["member"]["id"], "kind": kind,
                 "miles": miles, "tier": tier, "year": datetime.now(UTC).year,
                 "payment": "pay_" + reference, "url": "https://pay.example.com/" + reference,
                 })).scalar_one())
        return found[0], found[1]

    return await db.transaction(work)
