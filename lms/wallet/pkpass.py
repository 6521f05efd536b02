"""Building and signing an Apple Wallet store card (.pkpass) with wallet-py3k.

wallet-py3k assembles pass.json, the manifest of SHA-1s and the zip. Its own signing shells
out to ``openssl smime`` with the key's password on the command line, where any user of the
machine can read it in the process list; the signature here is made in-process with
``cryptography`` instead: the same detached PKCS#7 (DER, binary content, signing time
attribute) over manifest.json, signed by the pass certificate and carrying the WWDR
certificate.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from wallet.models import (  # type: ignore[import-untyped]
    Barcode,
    BarcodeFormat,
    Pass,
    StoreCard,
)

from lms.wallet.certs import AppleSigning

MEDIA_TYPE = "application/vnd.apple.pkpass"


@dataclass(frozen=True, slots=True)
class CardContent:
    """What a member's card shows; everything a pass is rebuilt from."""

    serial_number: str
    authentication_token: str
    member_name: str
    card_number: str
    tier_name: str
    miles: int
    background_color: str
    foreground_color: str
    label_color: str


@dataclass(frozen=True, slots=True)
class PassIdentity:
    pass_type_identifier: str
    team_identifier: str
    organization_name: str
    web_service_url: str


class SignedPass(Pass):  # type: ignore[misc]
    """wallet-py3k's Pass, signed in-process and with the ``barcodes`` array of current
    Wallet beside the deprecated ``barcode`` key that older iOS versions read."""

    def __init__(self, info: Any, signing: AppleSigning, **kwargs: Any) -> None:
        super().__init__(info, **kwargs)
        self._signing = signing

    def json_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().json_dict()
        if self.barcode:
            d["barcodes"] = [self.barcode.json_dict()]
        return d

    def _createSignature(self, manifest: bytes, *_: Any) -> bytes:
        return sign_manifest(manifest, self._signing)


def sign_manifest(manifest: bytes, signing: AppleSigning) -> bytes:
    cert, key, wwdr = load_signing(signing.certificate, signing.key, signing.password,
                                   signing.wwdr_certificate, _mtime(signing))
    builder = (pkcs7.PKCS7SignatureBuilder().set_data(manifest)
               .add_signer(cert, key, hashes.SHA256()).add_certificate(wwdr))
    return builder.sign(serialization.Encoding.DER,
                        [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])


def _mtime(signing: AppleSigning) -> float:
    return max(p.stat().st_mtime for p in (signing.certificate, signing.key,
                                           signing.wwdr_certificate))


@lru_cache(maxsize=4)
def load_signing(cert_path: Path, key_path: Path, password: bytes | None, wwdr_path: Path,
                 mtime: float) -> tuple[x509.Certificate, Any, x509.Certificate]:
    # ``mtime`` is part of the cache key so that replaced files are read again.
    cert = load_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password)
    wwdr = load_certificate(wwdr_path.read_bytes())
    return cert, key, wwdr


def load_certificate(data: bytes) -> x509.Certificate:
    # Apple hands out the WWDR certificate in DER; exported ones are usually PEM.
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def build_pkpass(content: CardContent, identity: PassIdentity, signing: AppleSigning) -> bytes:
    card = StoreCard()
    card.addPrimaryField("miles", content.miles, "MILES")
    card.addSecondaryField("member", content.member_name, "MEMBER")
    card.addSecondaryField("tier", content.tier_name, "TIER")
    card.addAuxiliaryField("card", content.card_number, "CARD NUMBER")
    card.addBackField("programme", identity.organization_name, "PROGRAMME")
    # Shown on the lock screen when an update changes the balance.
    card.primaryFields[0].changeMessage = "Your balance is now %@ miles"
    card.secondaryFields[1].changeMessage = "Your tier is now %@"
    pkpass = SignedPass(card, signing, passTypeIdentifier=identity.pass_type_identifier,
                        organizationName=identity.organization_name,
                        teamIdentifier=identity.team_identifier)
    pkpass.serialNumber = content.serial_number
    pkpass.description = f"{identity.organization_name} membership card"
    pkpass.logoText = identity.organization_name
    pkpass.barcode = Barcode(message=content.card_number, format=BarcodeFormat.QR,
                             altText=content.card_number)
    pkpass.barcode.messageEncoding = "utf-8"
    pkpass.backgroundColor = content.background_color
    pkpass.foregroundColor = content.foreground_color
    pkpass.labelColor = content.label_color
    pkpass.webServiceURL = identity.web_service_url
    pkpass.authenticationToken = content.authentication_token
    rgb = parse_rgb(content.background_color)
    for name, size in (("icon.png", 29), ("icon@2x.png", 58), ("logo.png", 50),
                       ("logo@2x.png", 100)):
        pkpass.addFile(name, BytesIO(solid_png(size, size, rgb)))
    out = BytesIO()
    pkpass.create(None, None, None, None, zip_file=out)
    return out.getvalue()


RGB = re.compile(r"^\s*rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)\s*$")


def parse_rgb(css: str) -> tuple[int, int, int]:
    match = RGB.match(css)
    if not match:
        return (0, 0, 0)
    r, g, b = (min(255, int(v)) for v in match.groups())
    return (r, g, b)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour; Wallet refuses a pass without an icon."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))
