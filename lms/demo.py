"""A small demo programme for a newcomer's first run: members with some history, staff users.

Loading is idempotent: members and staff are found by e-mail, every credit and transfer
carries an external reference the ledger refuses to apply twice, and the pending hold is
only placed while the member has nothing held. A second load changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

import lms.models  # noqa: F401 - the ORM resolves members' foreign keys over every table
from lms.accounts.repository import MemberRepository
from lms.accounts.schemas import RegisterRequest
from lms.accounts.service import EmailTaken, MemberService
from lms.accrual.earning import Coupon
from lms.accrual.programme import demo_programme_path, load_file
from lms.accrual.service import credit_coupons
from lms.auth.service import AuthService, StaffExists
from lms.db import Database, raw_connection
from lms.ledger.errors import DuplicateExternalReference, InsufficientMiles
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Actor, EntryKind, SystemAccount, Unit
from lms.partners.errors import PartnerExists
from lms.partners.repository import PartnerRepository
from lms.partners.schemas import ApiKeyCreate, EarnRateSet, PartnerCreate
from lms.partners.service import PartnerService
from lms.redemption.service import INTERNAL_PARTNER, internal_partner
from lms.settings import Settings
from lms.wallet.certs import ensure_dev_certs

MEMBER_PASSWORD = "demo-member-pass"
STAFF_PASSWORD = "demo-staff-pass"
SOURCE = "demo"
ACTOR = Actor.system("demo")


@dataclass(frozen=True, slots=True)
class DemoMember:
    key: str
    email: str
    first_name: str
    last_name: str
    locale: str
    timezone: str
    birth_date: date
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class DemoCredit:
    member: str
    ref: str
    miles: int
    description: str
    days_ago: int
    unit: Unit = Unit.MILES
    expires_in_days: int | None = None


MEMBERS = (
    DemoMember("ada", "ada.lovelace@example.com", "Ada", "Lovelace", "en-GB", "Europe/London",
               date(1985, 12, 10), "+44 20 7946 0958"),
    DemoMember("grace", "grace.hopper@example.com", "Grace", "Hopper", "en-US",
               "America/New_York", date(1976, 12, 9)),
    DemoMember("alan", "alan.turing@example.com", "Alan", "Turing", "en-GB", "Europe/London",
               date(1992, 6, 23)),
    DemoMember("katherine", "katherine.johnson@example.com", "Katherine", "Johnson", "en-US",
               "America/Chicago", date(1988, 8, 26)),
    DemoMember("marie", "marie.curie@example.com", "Marie", "Curie", "fr-FR", "Europe/Paris",
               date(1995, 11, 7)),
)

CREDITS = (
    DemoCredit("ada", "ada-lhr-jfk", 3450, "Flight LHR-JFK, economy", 200),
    DemoCredit("ada", "ada-lhr-jfk-sm", 3450, "Flight LHR-JFK, status miles", 200,
               unit=Unit.STATUS_MILES),
    DemoCredit("ada", "ada-hotel", 1200, "Partner hotel stay", 120),
    DemoCredit("ada", "ada-card", 5000, "Co-branded card welcome bonus", 30),
    DemoCredit("ada", "ada-promo", 800, "Spring promotion (expires soon)", 20,
               expires_in_days=45),
    DemoCredit("grace", "grace-jfk-sfo", 12000, "Flight JFK-SFO, business", 90),
    DemoCredit("alan", "alan-car", 1500, "Partner car rental", 60),
    DemoCredit("katherine", "katherine-iah-nrt", 25000, "Flight IAH-NRT, first", 150),
)

# (member, ticket, coupon, days ago, flight, origin, destination, booking class)
DEMO_COUPONS = (
    ("alan", "1259900000001", 1, 40, "117", "LHR", "JFK", "J"),
    ("alan", "1259900000001", 2, 33, "118", "JFK", "LHR", "J"),
    ("marie", "1259900000002", 1, 12, "331", "CDG", "LHR", "Y"),
)

TRANSFER = ("grace", "alan", 2000, "grace-to-alan")
HOLD = ("katherine", 4000, "demo: partner hotel booking awaiting confirmation")

STAFF = (
    ("agent@example.com", "Demo Agent", "agent"),
    ("supervisor@example.com", "Demo Supervisor", "supervisor"),
    ("marketer@example.com", "Demo Marketer", "marketer"),
    ("admin@example.com", "Demo Admin", "admin"),
)


@dataclass
class DemoReport:
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def load(db: Database, settings: Settings) -> DemoReport:
    """Load the demo programme into a migrated database (``lms db upgrade`` first)."""
    system = SystemAccounts(settings.system_account_shards)

    async def load_system_accounts(session: AsyncSession) -> None:
        await system.load(LedgerRepository(await raw_connection(session)))
    # Ledger.credit picks a system account before its first query would load them.
    await db.transaction(load_system_accounts)
    report = DemoReport()
    rules = await load_file(db, demo_programme_path(), "demo")
    report.created += rules.added
    report.skipped += rules.kept
    accounts = {m.key: await _member(db, settings, system, m, report) for m in MEMBERS}
    now = datetime.now(UTC)

    for credit in CREDITS:
        async def post(session: AsyncSession, c: DemoCredit = credit) -> None:
            effective = now - timedelta(days=c.days_ago)
            expires = now + timedelta(days=c.expires_in_days) if c.expires_in_days else None
            await Ledger(session, system).credit(
                accounts[c.member], c.miles, kind=EntryKind.ACCRUAL, actor=ACTOR, unit=c.unit,
                from_system=(SystemAccount.ISSUANCE if c.unit is Unit.MILES
                             else SystemAccount.QUALIFICATION),
                source=SOURCE, external_ref=c.ref, description=c.description,
                effective_at=effective, lot_expires_at=expires)
        await _once(db, post, f"credit {credit.ref}", report)

    sender, receiver, miles, ref = TRANSFER

    async def transfer(session: AsyncSession) -> None:
        await Ledger(session, system).transfer(
            accounts[sender], accounts[receiver], miles, actor=ACTOR, source=SOURCE,
            external_ref=ref, description=f"Miles shared by {sender} with {receiver}")
    await _once(db, transfer, f"transfer {ref}", report)

    holder, amount, reference = HOLD

    async def hold(session: AsyncSession) -> bool:
        ledger = Ledger(session, system)
        miles_balance = next(b for b in await ledger.balances(accounts[holder])
                             if b.unit is Unit.MILES)
        if miles_balance.held:
            return False
        await ledger.create_hold(accounts[holder], amount, actor=ACTOR, reference=reference,
                                 expires_at=now + timedelta(days=7))
        return True
    (report.created if await db.transaction(hold) else report.skipped).append(
        f"hold on {holder}")

    await _flights(db, settings, system, report)
    await _partner(db, settings, system, report)
    await _awards_partner(db, system, report)

    for email, name, role in STAFF:
        async def staff(session: AsyncSession, e: str = email, n: str = name,
                        r: str = role) -> None:
            await AuthService(session, settings).create_staff(email=e, name=n, role=r,
                                                              password=STAFF_PASSWORD)
        try:
            await db.transaction(staff)
            report.created.append(f"staff {email}")
        except StaffExists:
            report.skipped.append(f"staff {email}")
    return report


async def _flights(db: Database, settings: Settings, system: SystemAccounts,
                   report: DemoReport) -> None:
    """Flown coupons through the feed's own path (earn rules, tier bonus, promotions); a
    second load finds them credited and changes nothing."""
    today = datetime.now(UTC).date()

    async def cards(session: AsyncSession) -> dict[str, str]:
        repo = MemberRepository(session)
        found = {m.key: await repo.by_email(m.email) for m in MEMBERS}
        return {k: m.card_number for k, m in found.items() if m is not None}

    card = await db.transaction(cards)
    coupons = [Coupon(ticket, number, card[who], today - timedelta(days=days_ago), "LM", "LM",
                      flight, origin, destination, booking_class)
               for who, ticket, number, days_ago, flight, origin, destination, booking_class
               in DEMO_COUPONS]
    for outcome in await credit_coupons(db, system, coupons,
                                        lot_validity_months=settings.lot_validity_months):
        what = (f"flight {outcome.coupon.external_ref} {outcome.coupon.origin}-"
                f"{outcome.coupon.destination}")
        (report.created if outcome.status == "credited" else report.skipped).append(what)


DEMO_PARTNER = "demo-shop"


def partner_key_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-partner-key"


async def _partner(db: Database, settings: Settings, system: SystemAccounts,
                   report: DemoReport) -> None:
    """A shop with an earn rate and one API key with every scope. The key is shown only once
    (only its hash is stored), so the demo keeps it in the ignored data directory to print it
    again on later runs."""

    async def create(session: AsyncSession) -> str | None:
        partners = PartnerService(session, system)
        try:
            await partners.create(PartnerCreate(
                code=DEMO_PARTNER, name="Demo Shop", kind="shop", currency="EUR",
                price_per_mile_milli_minor=1200, value_per_mile_milli_minor=800))
        except PartnerExists:
            return None
        await partners.set_earn_rate(DEMO_PARTNER, EarnRateSet(
            category="general", miles_per_unit_bp=20000,
            effective_from=datetime.now(UTC) - timedelta(days=365)))
        issued = await partners.issue_key(DEMO_PARTNER, ApiKeyCreate(
            scopes=["accrue", "redeem", "statements", "flights"]))
        return issued.key

    key = await db.transaction(create)
    if key is None:
        report.skipped.append(f"partner {DEMO_PARTNER}")
        return
    path = partner_key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    report.created.append(f"partner {DEMO_PARTNER} with an API key")


async def _awards_partner(db: Database, system: SystemAccounts, report: DemoReport) -> None:
    """The programme's airline partner (seeded by the migrations) with its clearing account,
    so that members' award bookings (POST /v1/me/award-bookings) can be held at once."""

    async def ensure(session: AsyncSession) -> bool:
        opened_before = await PartnerRepository(session).by_code(INTERNAL_PARTNER)
        had_account = opened_before is not None and opened_before.clearing_account_id
        await internal_partner(session, system)
        return not had_account

    (report.created if await db.transaction(ensure) else report.skipped).append(
        f"partner {INTERNAL_PARTNER} clearing account")


async def _member(db: Database, settings: Settings, system: SystemAccounts, m: DemoMember,
                  report: DemoReport) -> int:
    request = RegisterRequest(email=m.email, password=MEMBER_PASSWORD, first_name=m.first_name,
                              last_name=m.last_name, phone=m.phone, birth_date=m.birth_date,
                              locale=m.locale, timezone=m.timezone)
    try:
        enrolment = await db.transaction(
            lambda s: MemberService(s, settings, system).register(request))
        report.created.append(f"member {m.email}")
        return enrolment.member.account_id
    except EmailTaken:
        report.skipped.append(f"member {m.email}")

    async def existing(session: AsyncSession) -> int:
        member = await MemberRepository(session).by_email(m.email)
        assert member is not None
        return member.account_id
    return await db.transaction(existing)


async def _once(db: Database, work: Callable[[AsyncSession], Awaitable[None]], what: str,
                report: DemoReport) -> None:
    try:
        await db.transaction(work)
        report.created.append(what)
    except (DuplicateExternalReference, InsufficientMiles):
        # Applied by an earlier load (a transfer may also find the sender already spent).
        report.skipped.append(what)


def _saved_key(settings: Settings) -> str:
    path = partner_key_file(settings)
    if path.exists():
        return path.read_text().strip()
    return "(its key was shown when it was created; issue another: lms partners rotate-key "\
        f"{DEMO_PARTNER})"


def _wallet_signing(settings: Settings) -> str:
    if settings.apple_pass_cert:
        return "passes signed with the configured certificate"
    folder = ensure_dev_certs(settings)
    return (f"passes signed with the development chain in {folder} "
            "(verify: openssl smime -verify ... -CAfile dev-ca.pem)")


def credentials(settings: Settings) -> str:
    base = settings.public_base_url.rstrip("/")
    lines = [
        f"Member portal  {base}/        agent console: {base}/console",
        f"API            {base}/v1",
        f"API docs       {base}/schema  (OpenAPI JSON: {base}/schema/openapi.json)",
        f"Health         {base}/health   readiness: {base}/ready",
        f"Payments       fake provider at {settings.payment_provider_url} (buy miles: "
        f"POST {base}/v1/me/mile-purchases, then open its paymentUrl)",
        "",
        f"Members (password {MEMBER_PASSWORD!r}; sign in: POST {base}/v1/auth/token):",
        *(f"  {m.email:<32} {m.first_name} {m.last_name}" for m in MEMBERS),
        "",
        f"Staff (password {STAFF_PASSWORD!r}; sign in: POST {base}/v1/staff/auth/token):",
        *(f"  {email:<32} {role}" for email, _, role in STAFF),
        "",
        f"Partner {DEMO_PARTNER!r} (Authorization: Bearer <key>; e.g. "
        f"POST {base}/v1/partner/accruals):",
        f"  {_saved_key(settings)}",
        "  Redemption flow (quote, hold, capture, refund, void; docs/partner-api.md):",
        f"  python examples/partner_client.py {base} <key> "
        f"--email {MEMBERS[0].email} --password {MEMBER_PASSWORD}",
        "",
        f"Wallet cards (member token): GET {base}/v1/me/wallet/apple (.pkpass), "
        f"GET {base}/v1/me/wallet/google",
        f"  {_wallet_signing(settings)}",
    ]
    return "\n".join(lines)
