"""Portal routes of the wallet cards (lms.wallet), signed in by the session cookie: the
Apple Wallet pass as a download, and a redirect to the Google Wallet save link.

The save link is made when the member asks for it, not when the dashboard is drawn: making
it marks the card as issued to Google, after which balance changes are sent there.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.response import Redirect

from lms.settings import Settings
from lms.wallet.certs import WalletReadiness, readiness
from lms.wallet.pkpass import MEDIA_TYPE
from lms.wallet.service import WalletService
from lms.web.context import MEMBER, finish, signed_in
from lms.web.errors import WalletUnavailable


async def wallet_readiness(settings: Settings) -> WalletReadiness:
    # Off the event loop: the first call may write the development keys.
    return await asyncio.to_thread(readiness, settings)


class PortalWalletController(Controller):
    path = "/wallet"
    opt = {"realm": MEMBER}

    @get("/apple.pkpass", name="portal.wallet_apple")
    async def apple(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        state = request.app.state
        if not (await wallet_readiness(ctx.settings)).apple:
            raise WalletUnavailable()
        data: bytes = await state.db.transaction(
            lambda s: WalletService(s, ctx.settings, state.system_accounts)
            .apple_pass(member_id))
        return finish(request, Response(
            content=data, media_type=MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="lms-card.pkpass"'}))

    @get("/google", name="portal.wallet_google")
    async def google(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ctx = signed_in(request)
        assert ctx.member is not None
        member_id = ctx.member.id
        state = request.app.state
        if not (await wallet_readiness(ctx.settings)).google:
            raise WalletUnavailable()
        url: str = await state.db.transaction(
            lambda s: WalletService(s, ctx.settings, state.system_accounts)
            .google_save_url(member_id))
        return finish(request, Redirect(path=url, status_code=303))
