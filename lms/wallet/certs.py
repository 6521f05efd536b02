"""Keys and certificates of the wallets: the configured ones, or a development set.

``lms wallet dev-certs`` (and the first pass served without configured certificates) writes
under ``<data_dir>/wallet/``: a self-signed CA standing in for Apple's WWDR certificate, a pass
certificate it signed, an APNs-style ES256 key and a Google-style service-account JSON file.
The directory is created whole or not at all, so processes starting side by side never mix
the files of two generations. Nothing under the data directory is committed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lms.settings import Settings

DEV_CA = "dev-ca.pem"
DEV_PASS_CERT = "pass-cert.pem"
DEV_PASS_KEY = "pass-key.pem"
DEV_APNS_KEY = "apns-key.p8"
DEV_GOOGLE_ACCOUNT = "google-service-account.json"
DEV_GOOGLE_EMAIL = "lms-wallet@lms-dev.iam.gserviceaccount.com"
DEV_FILES = (DEV_CA, DEV_PASS_CERT, DEV_PASS_KEY, DEV_APNS_KEY, DEV_GOOGLE_ACCOUNT)


def dev_dir(settings: Settings) -> Path:
    return settings.data_dir / "wallet"


@dataclass(frozen=True, slots=True)
class AppleSigning:
    certificate: Path
    key: Path
    password: bytes | None
    wwdr_certificate: Path


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    email: str
    private_key_pem: str
    key_id: str | None


def apple_signing(settings: Settings) -> AppleSigning:
    """The configured pass certificate, key and WWDR certificate, else the development set."""
    password = (settings.apple_pass_key_password.get_secret_value().encode()
                if settings.apple_pass_key_password else None)
    if settings.apple_pass_cert and settings.apple_pass_key and settings.apple_wwdr_cert:
        return AppleSigning(settings.apple_pass_cert, settings.apple_pass_key, password,
                            settings.apple_wwdr_cert)
    folder = ensure_dev_certs(settings)
    return AppleSigning(folder / DEV_PASS_CERT, folder / DEV_PASS_KEY, None, folder / DEV_CA)


def google_account(settings: Settings) -> ServiceAccount:
    path = settings.google_service_account_file
    if path is None:
        path = ensure_dev_certs(settings) / DEV_GOOGLE_ACCOUNT
    return read_service_account(path)


@lru_cache(maxsize=8)
def _service_account(path: Path, mtime: float) -> ServiceAccount:
    data = json.loads(path.read_text())
    return ServiceAccount(email=data["client_email"], private_key_pem=data["private_key"],
                          key_id=data.get("private_key_id"))


def read_service_account(path: Path) -> ServiceAccount:
    return _service_account(path, path.stat().st_mtime)


def ensure_dev_certs(settings: Settings, *, force: bool = False) -> Path:
    """The development set under data_dir/wallet, generated when missing (or ``force``)."""
    folder = dev_dir(settings)
    if not force and all((folder / name).exists() for name in DEV_FILES):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wallet-", dir=folder.parent))
    try:
        write_dev_certs(staging, settings)
        if force and folder.exists():
            shutil.rmtree(folder)
        try:
            os.rename(staging, folder)
        except OSError:
            # Another process won the race; its set is as good as ours.
            if not all((folder / name).exists() for name in DEV_FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_dev_certs(folder: Path, settings: Settings) -> None:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "LMS Development WWDR CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LMS development"),
    ])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    pass_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Apple's pass certificates name the pass type in UID and the team in OU.
    subject = x509.Name([
        x509.NameAttribute(NameOID.USER_ID, settings.apple_pass_type_identifier),
        x509.NameAttribute(NameOID.COMMON_NAME,
                           f"Pass Type ID: {settings.apple_pass_type_identifier}"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, settings.apple_team_identifier),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.apple_organization_name),
    ])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_name)
            .public_key(pass_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    google_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(folder / DEV_CA, ca.public_bytes(serialization.Encoding.PEM))
    write(folder / DEV_PASS_CERT, cert.public_bytes(serialization.Encoding.PEM))
    write(folder / DEV_PASS_KEY, private_pem(pass_key), secret=True)
    write(folder / DEV_APNS_KEY, private_pem(ec.generate_private_key(ec.SECP256R1())),
          secret=True)
    account = {"type": "service_account", "client_email": DEV_GOOGLE_EMAIL,
               "private_key_id": "dev", "private_key": private_pem(google_key).decode(),
               "token_uri": settings.google_token_uri}
    write(folder / DEV_GOOGLE_ACCOUNT, json.dumps(account, indent=2).encode(), secret=True)


def private_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write(path: Path, data: bytes, *, secret: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@dataclass(frozen=True, slots=True)
class WalletReadiness:
    """Whether this server can sign Apple passes and Google save links at all."""

    apple: bool
    google: bool


def readiness(settings: Settings) -> WalletReadiness:
    """The keys and certificates that ``apple_signing`` and ``google_account`` would use,
    checked for being there and readable (the development set is made when none is
    configured, as the first pass served would). A wallet that cannot sign is simply not
    offered: the member portal shows no button rather than an error page."""
    try:
        signing = apple_signing(settings)
        apple = all(path.is_file() and os.access(path, os.R_OK) for path in
                    (signing.certificate, signing.key, signing.wwdr_certificate))
    except (OSError, ValueError):
        apple = False
    try:
        google_account(settings)
        google = True
    except (OSError, ValueError, KeyError):
        google = False
    return WalletReadiness(apple, google)
