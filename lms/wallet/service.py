"""The wallet rules: a member's card in Apple and Google Wallet, and the PassKit web service.

Authentication tokens: every download of the Apple pass embeds a fresh random token (256
bits); only its SHA-256 is stored, so a leaked database opens no pass. The device sends the
token back as ``Authorization: ApplePass <token>``, which is hashed and looked up; the latest
version of a pass is signed with the token the device presented, so the pass it already holds
keeps working. A plain hash is enough for random 256-bit secrets (nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.accounts.service import MemberService
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import Unit
from lms.settings import Settings
from lms.tiers.service import TierService
from lms.wallet import google
from lms.wallet.certs import apple_signing, google_account
from lms.wallet.errors import MembershipClosed, PassTypeUnknown, PassUnauthorized
from lms.wallet.pkpass import CardContent, PassIdentity, build_pkpass
from lms.wallet.repository import PassRow, WalletRepository

AUTH_SCHEME = "applepass"
# Downloads (tokens) and devices kept per pass; the oldest go first.
TOKENS_PER_PASS = 50
DEVICES_PER_PASS = 20


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_serial() -> str:
    return secrets.token_hex(16)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tag_of(at: datetime) -> str:
    """The opaque ``lastUpdated`` tag: microseconds since the epoch."""
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return str(delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds)


def parse_tag(tag: str | None) -> datetime | None:
    """A tag this server issued; anything else means "send everything"."""
    if not tag or not tag.isdigit() or len(tag) > 19:
        return None
    micros = int(tag)
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(
        microsecond=micros % 1_000_000)


def token_from_header(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != AUTH_SCHEME or not token.strip():
        raise PassUnauthorized()
    return token.strip()


@dataclass(frozen=True, slots=True)
class LatestPass:
    pkpass: bytes
    last_modified: datetime


def pass_identity(settings: Settings) -> PassIdentity:
    return PassIdentity(
        pass_type_identifier=settings.apple_pass_type_identifier,
        team_identifier=settings.apple_team_identifier,
        organization_name=settings.apple_organization_name,
        web_service_url=(settings.apple_web_service_url
                         or settings.public_base_url.rstrip("/") + "/v1/passkit"))


class WalletService:
    def __init__(self, session: AsyncSession, settings: Settings,
                 system: SystemAccounts) -> None:
        self.session = session
        self.settings = settings
        self.system = system
        self.repo = WalletRepository(session)

    # -- what a card shows -----------------------------------------------------------------

    async def member(self, member_id: int) -> Member:
        member = await MemberService(self.session, self.settings, self.system).get(member_id)
        if member.status == "closed":
            raise MembershipClosed()
        return member

    async def content(self, member: Member, serial: str, token: str) -> CardContent:
        balances = await Ledger(self.session, self.system).balances(member.account_id)
        miles = next((b.available for b in balances if b.unit is Unit.MILES), 0)
        tier = (await TierService(self.session).ladder(datetime.now(UTC))).get(member.tier)
        return CardContent(
            serial_number=serial, authentication_token=token,
            member_name=f"{member.first_name} {member.last_name}",
            card_number=member.card_number, tier_name=tier.name, miles=miles,
            background_color=tier.background_color, foreground_color=tier.foreground_color,
            label_color=tier.label_color)

    async def card(self, member_id: int) -> tuple[PassRow, Member]:
        member = await self.member(member_id)
        return await self.repo.pass_for_member(member.id, new_serial()), member

    # -- member endpoints ------------------------------------------------------------------

    async def apple_pass(self, member_id: int) -> bytes:
        """A signed .pkpass with a token of its own for this download."""
        row, member = await self.card(member_id)
        token = new_token()
        await self.repo.add_token(row.id, hash_token(token), keep=TOKENS_PER_PASS)
        content = await self.content(member, row.serial_number, token)
        return build_pkpass(content, pass_identity(self.settings), apple_signing(self.settings))

    async def google_save_url(self, member_id: int) -> str:
        row, member = await self.card(member_id)
        await self.repo.mark_google_issued(row.id)
        content = await self.content(member, row.serial_number, "")
        return google.save_url(self.settings, google_account(self.settings), content)

    # -- PassKit web service ---------------------------------------------------------------

    def check_pass_type(self, pass_type: str) -> None:
        if pass_type != self.settings.apple_pass_type_identifier:
            raise PassTypeUnknown()

    async def authenticate(self, pass_type: str, serial: str, authorization: str | None
                           ) -> tuple[PassRow, str]:
        """The pass the device holds, if its token is one issued for it; a wrong token and
        an unknown serial answer alike (401), so that serials cannot be probed."""
        token = token_from_header(authorization)
        self.check_pass_type(pass_type)
        row = await self.repo.pass_by_token(serial, hash_token(token))
        if row is None:
            raise PassUnauthorized()
        return row, token

    async def register(self, dli: str, pass_type: str, serial: str,
                       authorization: str | None, push_token: str) -> bool:
        """True when the device is newly registered for the pass (201), False when it was
        already (200; its push token is refreshed)."""
        row, _ = await self.authenticate(pass_type, serial, authorization)
        return await self.repo.register(dli, row.id, push_token, keep=DEVICES_PER_PASS)

    async def unregister(self, dli: str, pass_type: str, serial: str,
                         authorization: str | None) -> None:
        row, _ = await self.authenticate(pass_type, serial, authorization)
        await self.repo.unregister(dli, row.id)

    async def updated_serials(self, dli: str, pass_type: str, since_tag: str | None,
                              authorization: str | None) -> tuple[list[str], str] | None:
        """Serial numbers of the device's passes changed after the tag, and the new tag;
        None when nothing changed. Devices send no Authorization header here (Apple's
        protocol); one that is sent must be the token of a pass the device registered."""
        self.check_pass_type(pass_type)
        if authorization is not None:
            token = token_from_header(authorization)
            if not await self.repo.device_has_pass_with_token(dli, hash_token(token)):
                raise PassUnauthorized()
        rows = await self.repo.updated_serials(dli, parse_tag(since_tag))
        if not rows:
            return None
        return [serial for serial, _ in rows], tag_of(max(at for _, at in rows))

    async def latest_pass(self, pass_type: str, serial: str, authorization: str | None,
                          if_modified_since: datetime | None) -> LatestPass | None:
        """The current pass, or None when it has not changed since ``if_modified_since``
        (HTTP dates have whole seconds, so the comparison is in whole seconds)."""
        row, token = await self.authenticate(pass_type, serial, authorization)
        if (if_modified_since is not None
                and row.updated_at.replace(microsecond=0) <= if_modified_since):
            return None
        content = await self.content(await self.member(row.member_id), row.serial_number,
                                     token)
        return LatestPass(build_pkpass(content, pass_identity(self.settings),
                                       apple_signing(self.settings)), row.updated_at)
