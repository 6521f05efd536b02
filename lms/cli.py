"""The ``lms`` command: serve, worker, db upgrade, ledger verify, openapi export, staff, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lms.settings import PROJECT_ROOT, get_settings


def resolved_url() -> str:
    from lms.db import database_url

    return database_url(get_settings())


def pin_database_url() -> str:
    """Resolve the database once, for this process and every process it starts.

    Without ``LMS_DATABASE_URL`` this starts (or joins) the embedded PostgreSQL; the URL is
    put back into the settings and the environment so that uvicorn's and Celery's child
    processes use that same server instead of each resolving it again.
    """
    from lms.db import embedded_postgres_url

    settings = get_settings()
    if not settings.database_url:
        settings.database_url = embedded_postgres_url(settings.data_dir)
    os.environ["LMS_DATABASE_URL"] = settings.database_url
    return settings.database_url


def cmd_serve(args: argparse.Namespace) -> int:
    from lms import migrate
    from lms.serve import serve

    settings = get_settings()
    url = pin_database_url()
    if args.migrate:
        migrate.upgrade(url)
    serve(args.host, args.port, args.workers, uvicorn_options(settings.log_level))
    return 0


def uvicorn_options(log_level: str) -> dict[str, Any]:
    """How ``lms serve`` runs uvicorn. Its access log is one INFO line per request: above
    INFO it is switched off rather than left to the logger to drop, since uvicorn formats
    the line's arguments (client address, quoted path) before the logger looks at the level.
    """
    level = log_level.lower()
    return {"log_level": level, "access_log": level in ("trace", "debug", "info"),
            "proxy_headers": True}


def cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    pin_database_url()
    from lms.worker import app

    argv = ["worker", f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel or settings.log_level}"]
    if args.beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    if args.queues:
        argv += [f"--queues={args.queues}"]
    if args.hostname:
        argv += [f"--hostname={args.hostname}"]
    app.worker_main(argv)


def cmd_db_stop_embedded(args: argparse.Namespace) -> int:
    import subprocess

    import pgserver

    pgdata = get_settings().data_dir / "pgdata"
    # pgserver runs the server as its own "pgserver" user when started by root, and pg_ctl
    # must run as the server's owner.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        # pgserver generates its command wrappers at import, out of mypy's sight.
        commands: Any = pgserver
        commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
        stopped = True
    except (subprocess.CalledProcessError, FileNotFoundError):
        stopped = False
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def cmd_demo_load(args: argparse.Namespace) -> int:
    from lms import demo
    from lms.db import Database

    settings = get_settings()

    async def run() -> demo.DemoReport:
        db = Database(resolved_url())
        try:
            return await demo.load(db, settings)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    print(f"demo programme: {len(report.created)} items created, "
          f"{len(report.skipped)} already there")
    for item in report.created:
        print(f"  + {item}")
    print()
    print(demo.credentials(settings))
    return 0


def cmd_demo_generate(args: argparse.Namespace) -> int:
    from lms.generator.load import DEMO_PASSWORD, Options, Refused, generate

    url = resolved_url()
    try:
        report = generate(url, get_settings(), Options(
            members=args.members, seed=args.seed, months=args.months, force=args.force,
            jobs=args.jobs))
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    total = sum(report.rows.values())
    print(f"generated {report.members:,} members in {report.seconds:.1f}s with "
          f"{report.workers} workers "
          f"({total:,} rows, {total / max(report.seconds, 1e-9):,.0f} rows/s; "
          f"index rebuild {report.index_seconds:.1f}s)")
    print("tiers: " + ", ".join(f"{t} {n:,}" for t, n in sorted(
        report.tiers.items(), key=lambda kv: -kv[1])))
    print(f"every generated member signs in with the password {DEMO_PASSWORD!r} "
          f"(member ids from {report.first_member_id:,}; e-mails end in .<member id>@...)")
    return 0


def cmd_wallet_dev_certs(args: argparse.Namespace) -> int:
    from lms.wallet.certs import ensure_dev_certs

    folder = ensure_dev_certs(get_settings(), force=args.force)
    # Paths only: the keys stay in their files (mode 600).
    print(f"wallet development certificates in {folder}:")
    for name in sorted(p.name for p in folder.iterdir()):
        print(f"  {name}")
    print("passes signed with them verify against dev-ca.pem but install on no device")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from lms import migrate
    from lms.db import Database
    from lms.ledger.repository import LedgerRepository
    from lms.ledger.service import SystemAccounts

    url = resolved_url()
    migrate.upgrade(url, args.revision)

    async def ensure_system_accounts() -> None:
        from lms.db import raw_connection

        db = Database(url)
        try:
            async def work(session: Any) -> None:
                repo = LedgerRepository(await raw_connection(session))
                await SystemAccounts(get_settings().system_account_shards).ensure(repo)
            await db.transaction(work)
        finally:
            await db.dispose()

    asyncio.run(ensure_system_accounts())
    print(f"database at {migrate.current_revision(url)}")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from lms.db import Database
    from lms.ledger.verify import INVARIANTS, verify
    from lms.references import CHECKS as REFERENCE_CHECKS
    from lms.references import verify_references
    from lms.settlement.verify import CHECKS, verify_statements

    async def run() -> int:
        db = Database(resolved_url())
        try:
            async with db.engine.connect() as conn:
                violations = await verify(conn, limit=args.limit)
                # Same transaction, so the statements are checked against the same snapshot.
                violations += await verify_statements(conn, limit=args.limit)
                violations += await verify_references(conn, limit=args.limit)
        finally:
            await db.dispose()
        for v in violations:
            print(v)
        broken = {v.invariant.number for v in violations}
        for inv in (*INVARIANTS, *CHECKS, *REFERENCE_CHECKS):
            mark = "FAIL" if inv.number in broken else "ok"
            print(f"[{mark:>4}] {inv.number}. {inv.name}", file=sys.stderr)
        return 1 if violations else 0

    return asyncio.run(run())


def cmd_openapi_export(args: argparse.Namespace) -> int:
    from lms.openapi_export import export

    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(export())
    print(f"wrote {path}")
    return 0


def cmd_staff_create(args: argparse.Namespace) -> int:
    from lms.auth.service import AuthService
    from lms.db import Database

    async def run() -> int:
        db = Database(resolved_url())
        try:
            staff_id = await db.transaction(lambda s: AuthService(s, get_settings()).create_staff(
                email=args.email, name=args.name, role=args.role, password=args.password))
        finally:
            await db.dispose()
        print(json.dumps({"id": staff_id, "email": args.email, "role": args.role}))
        return 0

    return asyncio.run(run())


def cmd_import_flights(args: argparse.Namespace) -> int:
    from lms.accrual.importer import import_flights
    from lms.db import Database
    from lms.ledger.service import SystemAccounts

    settings = get_settings()
    path = Path(args.file)
    if not path.is_file():
        print(f"lms: no such file: {path}", file=sys.stderr)
        return 2

    async def run() -> int:
        import signal

        # SIGTERM stops the import like Ctrl-C does (asyncio.run cancels on SIGINT): batches
        # in flight roll back, the summary is printed, the checkpoint says where to resume.
        this = asyncio.current_task()
        if this is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
        db = Database(resolved_url(), pool_size=args.concurrency + 2, max_overflow=0,
                      raw_pool_size=args.concurrency + 2)
        try:
            report = await import_flights(
                db, SystemAccounts(settings.system_account_shards), path,
                batch_size=args.batch_size, concurrency=args.concurrency,
                lot_validity_months=settings.lot_validity_months, resume=not args.restart,
                progress=None if args.quiet else sys.stderr, reevaluate_tiers=args.tiers)
        finally:
            await db.dispose()
        print(report.summary())
        return 130 if report.interrupted else 0

    return _run_async(run())


def cmd_rules_load(args: argparse.Namespace) -> int:
    from lms.accrual.programme import describe, load_file
    from lms.db import Database

    async def run() -> int:
        db = Database(resolved_url())
        try:
            report = await load_file(db, Path(args.file))
        finally:
            await db.dispose()
        print(describe(report))
        return 0

    return asyncio.run(run())


def cmd_payments_fake_provider(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from lms.payments.fake_provider import serve

    settings = get_settings()
    configured = urlsplit(settings.payment_provider_url)
    port = args.port or configured.port or 8090
    host = args.host or configured.hostname or "127.0.0.1"
    url = f"http://{host}:{port}"
    print(f"fake payment provider at {url} (webhooks signed with LMS_PAYMENT_WEBHOOK_SECRET)",
          flush=True)
    serve(host, port, args.secret or settings.payment_webhook_secret, url)
    return 0


def _run_async(coro: Any) -> int:
    """asyncio.run with uvloop when installed (bulk commands are client-CPU bound)."""
    try:
        import uvloop
    except ImportError:
        result: int = asyncio.run(coro)
        return result
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        value: int = runner.run(coro)
        return value


def run_partner_service(work: Callable[[Any], Any]) -> Any:
    """Run ``work(PartnerService)`` as one unit of work against the configured database."""
    from lms.db import Database
    from lms.ledger.service import SystemAccounts
    from lms.partners.service import PartnerService

    async def run() -> Any:
        db = Database(resolved_url())
        system = SystemAccounts(get_settings().system_account_shards)
        try:
            return await db.transaction(lambda s: work(PartnerService(s, system)))
        finally:
            await db.dispose()

    return asyncio.run(run())


def print_issued(issued: Any) -> None:
    key = issued.api_key
    print(json.dumps({"partner": issued.partner_code, "prefix": key.prefix,
                      "scopes": list(key.scopes), "key": issued.key}))
    print("The key is shown this once; only its hash is stored.", file=sys.stderr)


def cmd_partners_create(args: argparse.Namespace) -> int:
    import msgspec

    from lms.errors import ValidationFailed
    from lms.partners.schemas import ApiKeyCreate, PartnerCreate

    # Through msgspec.convert, so that the command checks what the admin API checks.
    try:
        data = msgspec.convert({
            "code": args.code, "name": args.name, "kind": args.kind,
            "currency": args.currency,
            "pricePerMileMilliMinor": args.price_per_mile_milli_minor,
            "valuePerMileMilliMinor": args.value_per_mile_milli_minor,
            "minCashShareBp": args.min_cash_share_bp, "webhookUrl": args.webhook_url,
        }, PartnerCreate)
        key = msgspec.convert({"scopes": args.scopes.split(","), "ipAllowList": (
            args.ip_allow_list.split(",") if args.ip_allow_list else None),
            "rateLimitPerMinute": args.rate_limit_per_minute}, ApiKeyCreate)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(str(exc)) from exc

    async def work(service: Any) -> Any:
        await service.create(data)
        return await service.issue_key(args.code, key)

    print_issued(run_partner_service(work))
    return 0


def cmd_partners_set_rate(args: argparse.Namespace) -> int:
    import msgspec

    from lms.errors import ValidationFailed
    from lms.partners.schemas import EarnRateSet

    try:
        data = msgspec.convert({"category": args.category,
                                "milesPerUnitBp": args.miles_per_unit_bp,
                                "effectiveFrom": args.effective_from,
                                "effectiveTo": args.effective_to}, EarnRateSet, strict=False)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(str(exc)) from exc
    rate = run_partner_service(lambda service: service.set_earn_rate(args.code, data))
    print(json.dumps({"partner": args.code, "id": rate.id, "category": rate.category,
                      "milesPerUnitBp": rate.miles_per_unit_bp,
                      "effectiveFrom": rate.effective_from.isoformat(),
                      "effectiveTo": rate.effective_to.isoformat()
                      if rate.effective_to else None}))
    return 0


def cmd_partners_rotate_key(args: argparse.Namespace) -> int:
    from datetime import timedelta

    overlap = timedelta(hours=args.overlap_hours)
    print_issued(run_partner_service(lambda service: service.rotate_key(args.code, overlap)))
    return 0


def cmd_partners_revoke(args: argparse.Namespace) -> int:
    key, code = run_partner_service(lambda service: service.revoke_key(args.prefix))
    print(json.dumps({"partner": code, "prefix": key.prefix, "status": key.status,
                      "revokedAt": key.revoked_at.isoformat()}))
    return 0


def cmd_partners_close_statements(args: argparse.Namespace) -> int:
    from lms.db import Database
    from lms.settlement.errors import MonthNotOver
    from lms.settlement.jobs import close_statements
    from lms.settlement.service import Month, last_closable

    month = None if args.month is None else Month.parse(args.month)
    if month is not None and month > last_closable(datetime.now(UTC)):
        raise MonthNotOver(f"{month} can be closed from {month.end.isoformat()} plus an hour")

    async def run() -> list[tuple[int, Any]]:
        db = Database(resolved_url())
        try:
            return await close_statements(db, month)
        finally:
            await db.dispose()

    closed = asyncio.run(run())
    for partner_id, closed_month in closed:
        print(json.dumps({"partnerId": partner_id, "month": str(closed_month)}))
    print(f"{len(closed)} statements closed", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lms", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("serve", cmd_serve, "run the API and web pages")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="API processes, each listening on its own SO_REUSEPORT socket")
    p.add_argument("--no-migrate", dest="migrate", action="store_false",
                   help="do not apply migrations before serving")

    p = add("worker", cmd_worker, "run Celery: a worker, with the beat scheduler unless "
            "--no-beat (run exactly one beat per deployment)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes")
    p.add_argument("--no-beat", dest="beat", action="store_false",
                   help="do not run the periodic scheduler in this worker")
    p.add_argument("--queues", default=None, help="comma-separated queues to consume")
    p.add_argument("--hostname", default=None, help="Celery node name (default celery@host)")
    p.add_argument("--loglevel", default=None, help="default: LMS_LOG_LEVEL")

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    p = add("upgrade", cmd_db_upgrade, "apply migrations and create system accounts", db)
    p.add_argument("revision", nargs="?", default="head")
    add("stop-embedded", cmd_db_stop_embedded,
        "stop the embedded PostgreSQL under LMS_DATA_DIR (when LMS_DATABASE_URL is unset)", db)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command",
                                                                   required=True)
    add("load", cmd_demo_load, "load the demo programme (idempotent) and print its sign-ins",
        demo)
    p = add("generate", cmd_demo_generate, "bulk-load generated members with years of ledger "
            "history (COPY); refuses a database that has members unless --force", demo)
    p.add_argument("--members", type=int, required=True, help="how many members")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    p.add_argument("--months", type=int, default=48, help="months of history")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes simulating members (default: the CPU count)")
    p.add_argument("--force", action="store_true",
                   help="add generated members to a database that already has members "
                        "(indexes are then kept and updated row by row)")

    ledger = sub.add_parser("ledger", help="ledger").add_subparsers(dest="ledger_command",
                                                                    required=True)
    p = add("verify", cmd_ledger_verify, "check the ledger invariants; exit 1 on violation",
            ledger)
    p.add_argument("--limit", type=int, default=100, help="violations shown per invariant")

    imports = sub.add_parser("import", help="bulk feeds").add_subparsers(
        dest="import_command", required=True)
    p = add("flights", cmd_import_flights, "credit a CSV of flown coupons (resumable: a rerun "
            "skips committed rows and answers credited coupons as duplicates)", imports)
    p.add_argument("file", help="CSV with a header: ticket_number, coupon_number, card_number, "
                   "flight_date, marketing_carrier, operating_carrier, flight_number, origin, "
                   "destination, booking_class[, cabin, booking_date, fare_amount, "
                   "fare_currency]")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=4, help="batches in flight at once")
    p.add_argument("--restart", action="store_true",
                   help="ignore the checkpoint and read the file from its first row")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-tiers", dest="tiers", action="store_false",
                   help="skip the closing pass that brings every member's tier up to date "
                        "(the nightly job does it later)")

    rules = sub.add_parser("rules", help="programme rules").add_subparsers(
        dest="rules_command", required=True)
    p = add("load", cmd_rules_load, "load earn rules, promotions and purchase rules from a "
            "programme file (TOML, see programme/demo.toml); existing versions are kept",
            rules)
    p.add_argument("file")

    payments = sub.add_parser("payments", help="payments").add_subparsers(
        dest="payments_command", required=True)
    p = add("fake-provider", cmd_payments_fake_provider,
            "run the fake payment provider (hosted payment page, signed webhooks) for the "
            "demo; default address: LMS_PAYMENT_PROVIDER_URL", payments)
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--secret", default=None, help="default: LMS_PAYMENT_WEBHOOK_SECRET")

    wallet = sub.add_parser("wallet", help="wallet passes").add_subparsers(
        dest="wallet_command", required=True)
    p = add("dev-certs", cmd_wallet_dev_certs, "write a self-signed pass-signing chain, an "
            "APNs key and a Google service-account key under LMS_DATA_DIR/wallet (used when "
            "no real ones are configured)", wallet)
    p.add_argument("--force", action="store_true", help="replace an existing set")

    openapi = sub.add_parser("openapi", help="OpenAPI").add_subparsers(dest="oa_command",
                                                                       required=True)
    p = add("export", cmd_openapi_export, "write the OpenAPI document", openapi)
    p.add_argument("--output", default=str(PROJECT_ROOT / "openapi" / "openapi.json"))

    staff = sub.add_parser("staff", help="staff users").add_subparsers(dest="staff_command",
                                                                       required=True)
    p = add("create", cmd_staff_create, "create a staff user", staff)
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True,
                   choices=["agent", "supervisor", "marketer", "admin"])
    p.add_argument("--password", required=True)
    partners = sub.add_parser("partners", help="partners and their API keys").add_subparsers(
        dest="partners_command", required=True)
    p = add("create", cmd_partners_create,
            "create a partner with its clearing account and print its first API key (once)",
            partners)
    p.add_argument("--code", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True, choices=["shop", "ota", "airline", "client"])
    p.add_argument("--currency", default="EUR")
    p.add_argument("--price-per-mile-milli-minor", type=int, default=0,
                   help="what the partner pays per mile issued, in 1/1000 minor units")
    p.add_argument("--value-per-mile-milli-minor", type=int, default=0,
                   help="what the programme pays per mile redeemed, in 1/1000 minor units")
    p.add_argument("--min-cash-share-bp", type=int, default=0)
    p.add_argument("--webhook-url", default=None)
    p.add_argument("--scopes", default="accrue",
                   help="comma-separated: accrue, redeem, statements, flights")
    p.add_argument("--ip-allow-list", default=None, help="comma-separated CIDR networks")
    p.add_argument("--rate-limit-per-minute", type=int, default=6000)
    p = add("set-rate", cmd_partners_set_rate,
            "add an earn rate for a category (closes the open-ended rate before it)", partners)
    p.add_argument("code")
    p.add_argument("category")
    p.add_argument("--miles-per-unit-bp", type=int, required=True,
                   help="miles per whole currency unit in basis points (1.5 miles = 15000)")
    p.add_argument("--effective-from", required=True, help="ISO 8601 with a UTC offset")
    p.add_argument("--effective-to", default=None)
    p = add("rotate-key", cmd_partners_rotate_key,
            "issue a new key; the partner's live keys stop working after the overlap",
            partners)
    p.add_argument("code")
    p.add_argument("--overlap-hours", type=float, default=24.0)
    p = add("revoke", cmd_partners_revoke, "revoke an API key at once", partners)
    p.add_argument("prefix", metavar="KEY_PREFIX")
    p = add("close-statements", cmd_partners_close_statements,
            "close the statements of ended months (every partner; a month closed already "
            "is left as it is)", partners)
    p.add_argument("--month", default=None, metavar="YYYY-MM",
                   help="only this month (default: every ended month not closed yet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from lms.errors import LmsError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
    except LmsError as exc:
        # An expected refusal (a staff user who exists, a missing system account): say what
        # and exit 1, without a traceback.
        print(f"lms: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
