"""Local servers speaking the third parties' protocols: APNs (HTTP/2 over TLS, token auth)
and Google (the OAuth2 token endpoint and the Wallet REST API). Each runs hypercorn on a thread
of its own and records what it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def write_tls_pair(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LMS test APNs CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "test-ca.pem", folder / "server-cert.pem", folder / "server-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def respond(send: Send, status: int, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass
class ApnsRequest:
    path: str
    http_version: str
    headers: dict[str, str]
    body: bytes
    claims: dict[str, Any] | None
    jwt_header: dict[str, Any] | None

    @property
    def push_token(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class FakeApns:
    """APNs: verifies the provider JWT (ES256, team, key id) and answers 200, or the status
    set for a push token in ``answers`` (410 for a device that is gone)."""

    public_key_pem: bytes
    team_id: str
    key_id: str
    requests: list[ApnsRequest] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        token = headers.get("authorization", "").removeprefix("bearer ")
        claims = jwt_header = None
        try:
            jwt_header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key_pem, algorithms=["ES256"],
                                options={"require": ["iss", "iat"]})
        except jwt.PyJWTError:
            claims = None
        request = ApnsRequest(scope["path"], scope["http_version"], headers, body, claims,
                              jwt_header)
        with self.lock:
            self.requests.append(request)
        valid = (claims is not None and claims["iss"] == self.team_id
                 and jwt_header is not None and jwt_header.get("kid") == self.key_id)
        if not valid:
            return await respond(send, 403, {"reason": "InvalidProviderToken"})
        status = self.answers.get(request.push_token, 200)
        await respond(send, status, None if status == 200 else {"reason": "Unregistered"})

    def received(self) -> list[ApnsRequest]:
        with self.lock:
            return list(self.requests)


@dataclass
class FakeGoogle:
    """Google's token endpoint (checks the signed assertion) and the Wallet REST API
    (loyaltyObject PATCH / POST), keeping the objects it holds."""

    public_key_pem: bytes
    email: str
    token_uri: str = ""
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if path == "/token" and method == "POST":
            return await self.token(send, parse_qs(body.decode()))
        data = json.loads(body) if body else {}
        with self.lock:
            self.calls.append((method, path, data))
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return await respond(send, 401, {"error": {"code": 401}})
        prefix = "/walletobjects/v1/loyaltyObject"
        if method == "POST" and path == prefix:
            with self.lock:
                self.objects[data["id"]] = data
            return await respond(send, 200, data)
        if method == "PATCH" and path.startswith(prefix + "/"):
            object_id = path.removeprefix(prefix + "/")
            with self.lock:
                if object_id not in self.objects:
                    return await respond(send, 404, {"error": {"code": 404}})
                self.objects[object_id] |= data
                current = self.objects[object_id]
            return await respond(send, 200, current)
        await respond(send, 404, {"error": {"code": 404}})

    async def token(self, send: Send, form: dict[str, list[str]]) -> None:
        try:
            claims = jwt.decode(form["assertion"][0], self.public_key_pem, algorithms=["RS256"],
                                audience=self.token_uri)
        except (KeyError, jwt.PyJWTError):
            return await respond(send, 400, {"error": "invalid_grant"})
        if (form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                or claims["iss"] != self.email or "wallet_object.issuer" not in claims["scope"]):
            return await respond(send, 400, {"error": "invalid_grant"})
        token = f"access-{len(self.tokens) + 1}"
        with self.lock:
            self.tokens.add(token)
        await respond(send, 200, {"access_token": token, "expires_in": 3600,
                                  "token_type": "Bearer"})

    def updates(self) -> list[tuple[str, str, dict[str, Any]]]:
        with self.lock:
            return list(self.calls)


class ServerThread:
    """hypercorn serving ``app`` on 127.0.0.1 (TLS when given a certificate) on a thread."""

    def __init__(self, app: Any, *, certfile: Path | None = None,
                 keyfile: Path | None = None) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.config = Config()
        self.config.bind = [f"fd://{self.sock.fileno()}"]
        self.config.loglevel = "WARNING"
        if certfile and keyfile:
            self.config.certfile, self.config.keyfile = str(certfile), str(keyfile)
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.started.set()
        await serve(self.app, self.config, shutdown_trigger=self.stop_event.wait)

    def start(self) -> ServerThread:
        self.thread.start()
        self.started.wait(5)
        # hypercorn listens once serve() ran; a connect proves it.
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        return self

    def stop(self) -> None:
        if self.loop and self.stop_event:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)
        # hypercorn took the socket over and closed it.
        with contextlib.suppress(OSError):
            self.sock.close()
