"""Portal routes of the wallet cards (lms.wallet), signed in by the session cookie: the
Apple Wallet pass as a download, and a redirect to the Google Wallet save link.

The save link is made when the member asks for it, not when the dashboard is drawn: making
it marks the card as issued to Google, after which balance changes are sent there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from litestar import Controller, Request, Response, get
from litestar.response import Redirect

from lms.settings import Settings
from lms.wallet.certs import WalletReadiness, readiness
from lms.wallet.pkpass import MEDIA_TYPE
from lms.wallet.service import WalletService
from lms.web.context import MEMBER, finish, signed_in
from lms.web.errors import WalletUnavailable

T = TypeVar("T")


async def wallet_readiness(settings: Settings) -> WalletReadiness:
    # Off the event loop: the first call may write the development keys.
    return await asyncio.to_thread(readiness, settings)


class PortalWalletController(Controller):
    path = "/wallet"
    opt = {"realm": MEMBER}

    @get("/apple.pkpass", name="portal.wallet_apple")
    async def apple(self, request: Request[Any, Any, Any]) -> Response[Any]:
        data: bytes = await for_member(
            request, "apple", lambda wallet, member_id: wallet.apple_pass(member_id))
        return finish(request, Response(
            content=data, media_type=MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="lms-card.pkpass"'}))

    @get("/google", name="portal.wallet_google")
    async def google(self, request: Request[Any, Any, Any]) -> Response[Any]:
        url: str = await for_member(
            request, "google", lambda wallet, member_id: wallet.google_save_url(member_id))
        return finish(request, Redirect(path=url, status_code=303))


async def for_member(request: Request[Any, Any, Any], kind: Literal["apple", "google"],
                     work: Callable[[WalletService, int], Awaitable[T]]) -> T:
    """``work`` for the signed-in member, if the ``kind`` of pass can be signed."""
    ctx = signed_in(request)
    assert ctx.member is not None
    member_id = ctx.member.id
    state = request.app.state
    if not getattr(await wallet_readiness(ctx.settings), kind):
        raise WalletUnavailable()
    result: T = await state.db.transaction(
        lambda s: work(WalletService(s, ctx.settings, state.system_accounts), member_id))
    return result
