"""HTTP load on the real service beside pgbench, on the same PostgreSQL in the same run.

    uv run python bench/http_load.py [--database-url URL] [--duration 20] [--clients 32]
                                     [--workers 2] [--mix balance=40,accrual=25,redeem=20,gift=15]

Starts ``lms serve --workers N`` on a free loopback port against the database (default:
``LMS_DATABASE_URL``, else ``lms_gen_1m`` on 127.0.0.1, the population of ``lms demo generate
--members 1000000``), and drives it from separate load processes, one HTTP/1.1 keep-alive
connection per client, over random generated members:

- ``balance``: ``GET /v1/me/balance`` as the member;
- ``accrual``: ``POST /v1/partner/accruals`` as the partner ``GEN-SHOP``;
- ``redeem``: the member's one-time code (``code``), the partner's ``quote`` and ``hold``,
  then a ``capture`` (two in three) or a ``void``;
- ``gift``: ``POST /v1/me/gifts`` to another sampled member, of the programme's minimum.

Every write carries an Idempotency-Key. A 409 that the business expects under random load
(``insufficient_miles``, ``gift_limit_exceeded``) is counted apart; anything else that is not
2xx is an error. Three phases of ``--duration`` seconds each: ``mix`` (``--mix``),
``transfers`` (accruals and gifts only: single transfers, one journal entry each) and
``reads`` (balance reads only); then pgbench's TPC-B-like script with as many clients. The
last line is ``ratio <x>``: single-transfer operations/s of the ``transfers`` phase over
pgbench's TPS (``ratio n/a`` with ``--pgbench-seconds 0``, the API alone). ``--phases floor``
(not a default) is ``GET /health`` only: what a request costs the framework before any
authentication or database, the floor under every other figure.

Set-up, not measured: the tables that autovacuum is due to visit (a freshly generated
database's) are vacuumed first; a sample of ``--members`` active members is drawn from the
database and their rows read once (a server holds its active members' rows in memory); a few
of them sign in over HTTP with the generated password (argon2, as members do), the others get
their tokens from ``AuthService.issue_token``, which is what a sign-in does after the password
check (a million argon2 checks would be the benchmark). The partner's key is issued through
``PartnerService.issue_key`` with the highest rate limit the API allows.

CPU is read from /proc for the server's processes, the PostgreSQL backends serving them and
the load processes, so that requests per CPU-second can be read even on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import uvloop

from bench._common import (
    PGBENCH_DATABASE,
    BackendCpu,
    pgbench_drop,
    pgbench_init,
    pgbench_tps,
    plain,
    process_cpu,
)
from lms.auth.principal import Principal, Role
from lms.auth.service import AuthService
from lms.db import Database
from lms.generator.load import DEMO_PASSWORD
from lms.ledger.service import SystemAccounts
from lms.partners.schemas import ApiKeyCreate
from lms.partners.service import PartnerService
from lms.settings import Settings

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/lms_gen_1m"
PARTNER = "GEN-SHOP"
DEFAULT_MIX = "balance=40,accrual=25,redeem=20,gift=15"
TRANSFER_MIX = "accrual=50,gift=50"
READ_MIX = "balance=100"
# The framework's floor: GET /health, no authentication, no database (--phases floor).
FLOOR_MIX = "health=100"
SCENARIOS = ("balance", "accrual", "redeem", "gift", "health")
# One journal entry (or one ledger hold) in one transaction each.
SINGLE_TRANSFERS = frozenset({"accrual", "gift", "hold", "capture", "void"})
EXPECTED_CONFLICTS = frozenset({"insufficient_miles", "gift_limit_exceeded"})
OPERATIONS = ("balance", "accrual", "code", "quote", "hold", "capture", "void", "gift",
              "health")


@dataclass(frozen=True)
class Member:
    id: int
    card: str
    last_name: str
    token: str


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    members: list[Member]
    partner_key: str
    gift_miles: int
    run: str


@dataclass
class Tally:
    """What one load process saw of one operation."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    expected: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.ok += other.ok
        self.expected += other.expected
        self.errors += other.errors
        for kind, n in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n


@dataclass
class LoadResult:
    tallies: dict[str, Tally]
    cpu_seconds: float


# ---------------------------------------------------------------------------------------------
# The load generator: raw HTTP/1.1 over asyncio streams. httpx spends several times the CPU per
# request, and on a 2-core machine the client's CPU is taken from the server (--client httpx
# measures it).


class Unanswered(Exception):
    pass


class RawHttp:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes | None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        payload = body or b""
        if body is not None or method == "POST":
            lines += ["content-type: application/json", f"content-length: {len(payload)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.writer = None
            raise Unanswered(str(exc)) from exc
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class HttpxHttp:
    def __init__(self, host: str, port: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=f"http://{host}:{port}", http2=False,
                                        timeout=60.0)

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes | None) -> tuple[int, bytes]:
        if body is not None or method == "POST":
            headers = headers | {"content-type": "application/json"}
        response = await self.client.request(method, path, headers=headers,
                                             content=body or b"")
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


class Client:
    """One simulated caller: one connection, its own random stream, its own tallies."""

    def __init__(self, target: Target, http: RawHttp | HttpxHttp, rng: random.Random,
                 tallies: dict[str, Tally], prefix: str) -> None:
        self.target, self.http, self.rng, self.tallies = target, http, rng, tallies
        self.prefix = prefix
        self.serial = 0

    def unique(self) -> str:
        self.serial += 1
        return f"{self.target.run}-{self.prefix}-{self.serial}"

    def member(self) -> Member:
        return self.rng.choice(self.target.members)

    async def call(self, op: str, method: str, path: str, token: str,
                   body: dict[str, Any] | None = None, idempotent: bool = False
                   ) -> dict[str, Any] | None:
        """The answer's JSON when it is 2xx; None after an expected conflict or an error."""
        headers = {"authorization": f"Bearer {token}"}
        if idempotent:
            headers["idempotency-key"] = self.unique()
        payload = None if body is None else json.dumps(body).encode()
        tally = self.tallies[op]
        start = time.perf_counter()
        try:
            status, data = await self.http.request(method, path, headers, payload)
        except Unanswered:
            tally.errors += 1
            tally.error_kinds["unanswered"] = tally.error_kinds.get("unanswered", 0) + 1
            return None
        tally.latencies.append(time.perf_counter() - start)
        if 200 <= status < 300:
            tally.ok += 1
            answer: dict[str, Any] = json.loads(data) if data else {}
            return answer
        try:
            code = str(json.loads(data).get("code"))
        except ValueError:
            code = "?"
        if status == 409 and code in EXPECTED_CONFLICTS:
            tally.expected += 1
            return None
        tally.errors += 1
        kind = f"{status} {code}"
        tally.error_kinds[kind] = tally.error_kinds.get(kind, 0) + 1
        return None

    async def balance(self) -> None:
        await self.call("balance", "GET", "/v1/me/balance", self.member().token)

    async def health(self) -> None:
        await self.call("health", "GET", "/health", self.member().token)

    async def accrual(self) -> None:
        body = {"cardNumber": self.member().card, "partnerTxnId": self.unique(),
                "amount": self.rng.randint(500, 50_000), "currency": "EUR",
                "category": "general", "occurredAt": datetime.now(UTC).isoformat()}
        await self.call("accrual", "POST", "/v1/partner/accruals", self.target.partner_key,
                        body, idempotent=True)

    async def redeem(self) -> None:
        member, key = self.member(), self.target.partner_key
        # Not bound to the partner: the generated partners' codes are upper case, which the
        # API's partnerCode pattern refuses.
        code = await self.call("code", "POST", "/v1/me/redemption-codes", member.token, {})
        if code is None:
            return
        order = self.rng.randint(2_000, 40_000)
        quote = await self.call("quote", "POST", "/v1/partner/redemption-quotes", key, {
            "cardNumber": member.card, "memberCode": code["code"], "orderAmount": order,
            "currency": "EUR"})
        if quote is None or quote["maxMiles"] < 1:
            return
        miles = self.rng.randint(1, quote["maxMiles"])
        cash = order - miles * quote["valuePerMileMilliMinor"] // 1000
        hold = await self.call("hold", "POST", "/v1/partner/holds", key, {
            "cardNumber": member.card, "memberCode": code["code"], "miles": miles,
            "cashAmount": cash, "currency": "EUR", "orderReference": self.unique(),
            "ttlSeconds": 600}, idempotent=True)
        if hold is None:
            return
        if self.rng.random() < 2 / 3:
            await self.call("capture", "POST", f"/v1/partner/holds/{hold['id']}/capture", key,
                            idempotent=True)
        else:
            await self.call("void", "POST", f"/v1/partner/holds/{hold['id']}/void", key,
                            idempotent=True)

    async def gift(self) -> None:
        sender, recipient = self.rng.sample(self.target.members, 2)
        await self.call("gift", "POST", "/v1/me/gifts", sender.token, {
            "recipientCardNumber": recipient.card, "recipientLastName": recipient.last_name,
            "miles": self.target.gift_miles}, idempotent=True)


def parse_mix(mix: str) -> dict[str, int]:
    weights: dict[str, int] = {}
    for part in mix.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in SCENARIOS or not weight.strip().isdigit():
            raise SystemExit(f"--mix: {part!r} is not one of {', '.join(SCENARIOS)}=<weight>")
        weights[name.strip()] = int(weight)
    if not any(weights.values()):
        raise SystemExit("--mix: every weight is 0")
    return weights


def load_process(target: Target, mix: str, clients: int, seconds: float, start_at: float,
                 seed: int, client_kind: str) -> LoadResult:
    """One load process: ``clients`` callers on one event loop until the deadline."""
    weights = parse_mix(mix)
    names, cum = list(weights), list(weights.values())

    async def run() -> LoadResult:
        tallies: dict[str, Tally] = defaultdict(Tally)
        https = [(RawHttp if client_kind == "raw" else HttpxHttp)(target.host, target.port)
                 for _ in range(clients)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_start = resource.getrusage(resource.RUSAGE_SELF)
        deadline = time.perf_counter() + seconds

        async def caller(i: int) -> None:
            client = Client(target, https[i], random.Random(seed + i), tallies,
                            f"{seed}.{i}")
            while time.perf_counter() < deadline:
                scenario = client.rng.choices(names, cum)[0]
                await getattr(client, scenario)()

        await asyncio.gather(*(caller(i) for i in range(clients)))
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        for http in https:
            await http.close()
        return LoadResult(dict(tallies), cpu.ru_utime - cpu_start.ru_utime
                          + cpu.ru_stime - cpu_start.ru_stime)

    return uvloop.run(run())


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc (Linux): the server's processes and the PostgreSQL backends that
# serve them (the pools' connections stay open, so their counters cover the phase; the server
# must run on this machine, PostgreSQL too for the backends' share).


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(entry))
            except OSError:
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def local_ports(pids: list[int]) -> list[int]:
    """The local TCP ports of the sockets these processes hold open."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[9] in inodes:
                        ports.append(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def backend_pids(url: str, server_pids: list[int]) -> list[int]:
    """The PostgreSQL backends serving the server's connections (by their client ports: other
    clients of the same database, e.g. a ``lms ledger verify``, are not ours)."""
    ports = local_ports(server_pids)
    with psycopg.connect(plain(url), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)",
                            (ports,))
        return [int(r[0]) for r in rows]


@dataclass
class CpuSnapshot:
    server: dict[int, float]
    backends: dict[int, float]

    @classmethod
    def take(cls, server_pid: int, url: str) -> CpuSnapshot:
        server = process_tree(server_pid)
        return cls({p: process_cpu(p) or 0.0 for p in server},
                   {p: process_cpu(p) or 0.0 for p in backend_pids(url, server)})

    def since(self, before: CpuSnapshot) -> tuple[float, float]:
        def used(now: dict[int, float], then: dict[int, float]) -> float:
            return sum(v - then.get(p, 0.0) for p, v in now.items())

        return used(self.server, before.server), used(self.backends, before.backends)


# ---------------------------------------------------------------------------------------------
# Set-up and the server.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_json(method: str, url: str, body: dict[str, Any] | None = None,
              token: str | None = None) -> Any:
    request = urllib.request.Request(url, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


# cProfile timed by CPU, not by the wall clock: on a shared machine the wall clock charges
# every function for the time the process waited to be scheduled.
PROFILER = """
import cProfile, runpy, sys, time
out, sys.argv = sys.argv[1], sys.argv[2:]
profiler = cProfile.Profile(time.process_time)
try:
    profiler.runcall(runpy.run_path, sys.argv[0], run_name="__main__")
finally:
    profiler.dump_stats(out)
"""


def start_server(url: str, port: int, workers: int, profile: str | None
                 ) -> subprocess.Popen[bytes]:
    lms = shutil.which("lms") or str(Path(sys.executable).parent / "lms")
    env = os.environ | {"LMS_DATABASE_URL": url, "LMS_LOG_LEVEL": "WARNING"}
    # With one worker uvicorn serves in the process it starts in, so cProfile sees it all.
    wrap = [sys.executable, "-c", PROFILER, profile] if profile else []
    server = subprocess.Popen(
        [*wrap, lms, "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--no-migrate"], env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    last = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"lms serve exited with {server.returncode}")
        try:
            if http_json("GET", f"http://127.0.0.1:{port}/ready")["status"] == "ready":
                return server
        except urllib.error.HTTPError as exc:
            # A database behind the code's migrations answers 503 and says so: show it.
            last = exc.read().decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit(f"lms serve did not become ready within 120 s; /ready: {last}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def settle(url: str) -> None:
    """VACUUM (ANALYZE) the tables that autovacuum is due to visit for their inserts: those
    of a database that ``lms demo generate`` has just loaded. Otherwise autovacuum reads the
    whole loaded history (tens of GB) during the phases and they measure it: a VACUUM of a
    fresh generation running beside the load once cut the transfers' rate to 520/s, against
    1,377/s a run later (docs/performance.md)."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        due = [str(r[0]) for r in conn.execute("""
            SELECT s.relname FROM pg_stat_user_tables s
            WHERE s.schemaname = 'public' AND s.n_live_tup > 100000
              AND s.n_ins_since_vacuum > current_setting(
                    'autovacuum_vacuum_insert_threshold')::bigint
                  + current_setting('autovacuum_vacuum_insert_scale_factor')::float8
                    * s.n_live_tup
            ORDER BY s.relname""").fetchall()]
        if not due:
            return
        started = time.monotonic()
        for table in due:
            conn.execute(f'VACUUM (ANALYZE) "{table}"')
        print(f"vacuumed {', '.join(due)}, which autovacuum was due to visit, in "
              f"{time.monotonic() - started:.0f} s (set-up, not measured)", flush=True)


def sample_members(url: str, n: int) -> list[tuple[int, str, str, str]]:
    """Active members chosen at random (id, card number, last name, e-mail)."""
    with psycopg.connect(plain(url)) as conn:
        total = conn.execute("SELECT count(*) FROM members").fetchone()
        assert total is not None
        # TABLESAMPLE SYSTEM reads a fraction of the pages instead of the whole table.
        percent = min(100.0, 100.0 * 3 * n / max(1, int(total[0])))
        rows = conn.execute(
            "SELECT id, card_number, last_name, email FROM members TABLESAMPLE SYSTEM (%s) "
            "WHERE status = 'active'", (percent,)).fetchall()
    if len(rows) < 2:
        raise SystemExit("the database needs at least two active members "
                         "(lms demo generate --members N)")
    random.Random(len(rows)).shuffle(rows)
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows[:n]]


# What the operations read of a member, by the member's card number (accruals, gifts) or
# account; postings only by the index that each posting of theirs adds an entry to.
WARM = """
    WITH m AS (SELECT account_id FROM members WHERE card_number = ANY(%(cards)s))
    SELECT (SELECT count(*) FROM m),
           (SELECT count(*) FROM balances b JOIN m ON b.account_id = m.account_id),
           (SELECT sum(l.remaining) FROM lots l JOIN m ON l.account_id = m.account_id),
           (SELECT count(*) FROM holds h JOIN m ON h.account_id = m.account_id),
           (SELECT count(*) FROM postings p JOIN m ON p.account_id = m.account_id)"""


def warm(url: str, cards: list[str]) -> tuple[int, ...]:
    """Read the sampled members' rows once (set-up, not measured): how many members,
    balances, miles in lots, holds and postings they have.

    A server's active members are in its memory; a freshly generated database is mostly on
    disk, and a machine may give its page cache back to the host. Unread, the first phase
    would measure reading the sample from disk rather than the service."""
    with psycopg.connect(plain(url)) as conn:
        row = conn.execute(WARM, {"cards": cards}).fetchone()
    assert row is not None
    return tuple(int(n or 0) for n in row)


def prepare(url: str, n: int, sign_ins: int, port: int) -> Target:
    """The sampled members' tokens and the partner's key (set-up, not measured)."""
    rows = sample_members(url, n)
    started = time.perf_counter()
    warm(url, [r[1] for r in rows])
    print(f"read the sampled members' rows in {time.perf_counter() - started:.1f} s "
          "(set-up, not measured)", flush=True)
    settings = Settings(database_url=url)

    async def tokens_and_key() -> tuple[list[str], str]:
        db = Database(url, pool_size=2, max_overflow=0)
        try:
            async def issue(session: Any) -> tuple[list[str], str]:
                auth = AuthService(session, settings)
                tokens = [(await auth.issue_token(Principal("member", r[0], Role.MEMBER))).token
                          for r in rows[sign_ins:]]
                key = await PartnerService(session, SystemAccounts(
                    settings.system_account_shards)).issue_key(PARTNER, ApiKeyCreate(
                        scopes=["accrue", "redeem"], rate_limit_per_minute=1_000_000))
                return tokens, key.key
            result: tuple[list[str], str] = await db.transaction(issue)
            return result
        finally:
            await db.dispose()

    issued, partner_key = asyncio.run(tokens_and_key())
    signed_in = [http_json("POST", f"http://127.0.0.1:{port}/v1/auth/token",
                           {"email": r[3], "password": DEMO_PASSWORD})["accessToken"]
                 for r in rows[:sign_ins]]
    members = [Member(r[0], r[1], r[2], t) for r, t in zip(rows, signed_in + issued,
                                                            strict=True)]
    terms = http_json("GET", f"http://127.0.0.1:{port}/v1/me/gifts/terms",
                      token=members[0].token)
    return Target("127.0.0.1", port, members, partner_key, max(1, int(terms["minMiles"])),
                  uuid.uuid4().hex[:8])


# ---------------------------------------------------------------------------------------------
# Phases and the report.


@dataclass
class Phase:
    name: str
    seconds: float
    tallies: dict[str, Tally]
    client_cpu: float
    server_cpu: float
    backend_cpu: float

    def rate(self, ops: frozenset[str] | None = None) -> float:
        return sum(t.ok + t.expected for op, t in self.tallies.items()
                   if ops is None or op in ops) / self.seconds

    def errors(self) -> int:
        return sum(t.errors for t in self.tallies.values())


def run_phase(name: str, mix: str, args: argparse.Namespace, target: Target,
              server: subprocess.Popen[bytes], url: str) -> Phase:
    processes = max(1, min(args.load_processes, args.clients))
    shares = [args.clients // processes + (i < args.clients % processes)
              for i in range(processes)]
    start_at = time.time() + 2.0
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(load_process, target, mix, share, args.duration, start_at,
                               random.randrange(1 << 30), args.client)
                   for share in shares]
        time.sleep(max(0.0, start_at - time.time()))
        before = CpuSnapshot.take(server.pid, url)
        results = [f.result() for f in futures]
        server_cpu, backend_cpu = CpuSnapshot.take(server.pid, url).since(before)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for result in results:
        for op, tally in result.tallies.items():
            tallies[op].add(tally)
    return Phase(name, args.duration, dict(tallies), sum(r.cpu_seconds for r in results),
                 server_cpu, backend_cpu)


def pgbench_with_cpu(url: str, clients: int, seconds: int, name: str) -> tuple[float, float]:
    """pgbench's TPS, and the CPU its backends used (polled from /proc while they live: they
    exit with pgbench)."""
    with BackendCpu(url, name, interval=0.25) as backends:
        tps = pgbench_tps(url, clients, seconds, name)
    return tps, backends.seconds


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] * 1000


def print_phase(phase: Phase, clients: int, workers: int) -> None:
    print(f"\nphase {phase.name}: {clients} clients, {phase.seconds:g} s, "
          f"{workers} server worker(s)")
    print(f"{'operation':<10} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'ok':>8} {'409 exp':>8} {'errors':>7}")
    total = Tally()
    for op in OPERATIONS:
        if op not in phase.tallies:
            continue
        tally = phase.tallies[op]
        total.add(tally)
        lat = sorted(tally.latencies)
        print(f"{op:<10} {(tally.ok + tally.expected) / phase.seconds:8.1f} "
              f"{percentile(lat, 0.50):8.1f} {percentile(lat, 0.95):8.1f} "
              f"{percentile(lat, 0.99):8.1f} {tally.ok:8d} {tally.expected:8d} "
              f"{tally.errors:7d}")
        for kind, n in sorted(tally.error_kinds.items()):
            print(f"{'':<10} error {kind}: {n}")
    lat = sorted(total.latencies)
    print(f"{'total':<10} {phase.rate():8.1f} {percentile(lat, 0.50):8.1f} "
          f"{percentile(lat, 0.95):8.1f} {percentile(lat, 0.99):8.1f} {total.ok:8d} "
          f"{total.expected:8d} {total.errors:7d}")
    requests = phase.rate() * phase.seconds
    print(f"single-transfer operations/s {phase.rate(SINGLE_TRANSFERS):.1f}")
    print(f"cpu: server {phase.server_cpu:.1f} s ({requests / max(phase.server_cpu, 1e-9):.0f}"
          f" requests per server cpu-second), postgres backends {phase.backend_cpu:.1f} s, "
          f"load generator {phase.client_cpu:.1f} s ({phase.client_cpu / phase.seconds:.2f} "
          f"of a core)")


def pgbench_report(url: str, args: argparse.Namespace) -> float:
    """Run pgbench's TPC-B-like script beside nothing else, print it, return its TPS."""
    print(f"\npgbench: {args.clients} clients, {args.pgbench_seconds} s, "
          f"scale {args.pgbench_scale}", flush=True)
    pgbench_init(url, args.pgbench_scale, args.pgbench_database)
    try:
        tps, pg_cpu = pgbench_with_cpu(url, args.clients, args.pgbench_seconds,
                                       args.pgbench_database)
    finally:
        pgbench_drop(url, args.pgbench_database)
    print(f"pgbench tpc-b tps {tps:.0f}")
    transactions = tps * args.pgbench_seconds
    print(f"cpu: pgbench's postgres backends {pg_cpu:.1f} s "
          f"({transactions / max(pg_cpu, 1e-9):.0f} transactions per backend cpu-second)")
    return tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url",
                        default=os.environ.get("LMS_DATABASE_URL") or DEFAULT_DATABASE)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="lms serve --workers")
    parser.add_argument("--mix", default=DEFAULT_MIX,
                        help=f"weights of {', '.join(SCENARIOS)} in the mix phase")
    parser.add_argument("--phases", default="mix,transfers,reads",
                        help="of mix, transfers, reads, floor (GET /health)")
    parser.add_argument("--members", type=int, default=5000, help="members sampled")
    parser.add_argument("--sign-ins", type=int, default=4,
                        help="sampled members who sign in over HTTP (argon2)")
    parser.add_argument("--load-processes", type=int, default=1)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the server (one worker) under cProfile (CPU time) to FILE")
    parser.add_argument("--pgbench-seconds", type=int, default=20,
                        help="0: no pgbench (and no ratio), the API alone")
    parser.add_argument("--pgbench-scale", type=int, default=32,
                        help="pgbench scale factor (>= clients, as pgbench advises)")
    parser.add_argument("--pgbench-database", default=PGBENCH_DATABASE)
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    mixes = {"mix": args.mix, "transfers": TRANSFER_MIX, "reads": READ_MIX,
             "floor": FLOOR_MIX}
    if not phases or any(p not in mixes for p in phases):
        raise SystemExit(f"--phases: a list of {', '.join(mixes)}")
    parse_mix(args.mix)
    url = plain(args.database_url)

    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} on {os.cpu_count()} cores", flush=True)
    settle(url)
    port = free_port()
    if args.profile:
        args.workers = 1
    server = start_server(url, port, args.workers, args.profile)
    try:
        target = prepare(url, args.members, args.sign_ins, port)
        print(f"{len(target.members)} members sampled ({min(args.sign_ins, len(target.members))}"
              f" signed in over HTTP), server on port {port}", flush=True)
        results = {name: run_phase(name, mixes[name], args, target, server, url)
                   for name in phases}
    finally:
        stop_server(server)
    for phase in results.values():
        print_phase(phase, args.clients, args.workers)

    tps = pgbench_report(url, args) if args.pgbench_seconds > 0 else None
    if "transfers" in results:
        transfers = results["transfers"]
        done = transfers.rate(SINGLE_TRANSFERS) * transfers.seconds
        print(f"single transfers per postgres backend cpu-second "
              f"{done / max(transfers.backend_cpu, 1e-9):.0f}, per server cpu-second "
              f"{done / max(transfers.server_cpu, 1e-9):.0f} (a measure of cost that depends "
              f"less on what else runs on the machine than the rates do)")
    if "reads" in results:
        reads = results["reads"]
        lat = sorted(reads.tallies["balance"].latencies) if "balance" in reads.tallies else []
        print(f"balance reads/s {reads.rate():.0f} (target 5000), p99 "
              f"{percentile(lat, 0.99):.1f} ms at {args.clients} clients (target < 50 ms)")
    errors = sum(p.errors() for p in results.values())
    print(f"unexpected errors {errors}")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}")
    basis = results.get("transfers") or next(iter(results.values()))
    # Without pgbench (--pgbench-seconds 0, to measure the API alone) there is no ratio.
    print("ratio n/a" if tps is None else f"ratio {basis.rate(SINGLE_TRANSFERS) / tps:.2f}")


if __name__ == "__main__":
    main()
