"""The portal's family pool page over HTTP: open, invite, answer, see members, leave, remove
and dissolve, each refusal shown on the page and changing nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from litestar import Litestar

from lms.accounts.repository import MemberRepository
from lms.db import Database
from lms.family.schemas import FamilyOut
from lms.family.service import FamilyService
from lms.ledger.service import SystemAccounts
from tests.web.support import browser, sign_up, submit


@dataclass
class WebMember:
    client: httpx.AsyncClient
    member_id: int
    card: str
    first_name: str


@pytest.fixture
async def clients(app: Litestar) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with browser(app) as a, browser(app) as b, browser(app) as c:
        yield [a, b, c]


async def member(db: Database, client: httpx.AsyncClient, first_name: str) -> WebMember:
    fields = await sign_up(client, firstName=first_name, lastName="Curie")
    found = await db.transaction(lambda s: MemberRepository(s).by_email(fields["email"]))
    assert found is not None
    return WebMember(client, found.id, found.card_number, first_name)


async def family_of(db: Database, system: SystemAccounts, member_id: int) -> FamilyOut:
    return await db.transaction(lambda s: FamilyService(s, system).view(member_id))


async def post(who: WebMember, action: str, **fields: str) -> httpx.Response:
    return await submit(who.client, "/family", action, fields)


async def invited(db: Database, system: SystemAccounts, head: WebMember,
                  guest: WebMember) -> int:
    answer = await post(head, "/family/invitations", cardNumber=guest.card)
    assert answer.status_code == 303, answer.text
    view = await family_of(db, system, guest.member_id)
    return view.invitations_received[0].id


async def test_open_invite_accept_and_see_the_members(
        clients: list[httpx.AsyncClient], db: Database, system: SystemAccounts) -> None:
    marie = await member(db, clients[0], "Marie")
    irene = await member(db, clients[1], "Irene")
    page = await marie.client.get("/family")
    assert page.status_code == 200 and 'id="no-pool"' in page.text

    opened = await post(marie, "/family/create")
    assert opened.headers["location"] == "/family?done=created"
    head_page = await marie.client.get("/family?done=created")
    assert "Your family pool is open" in head_page.text
    assert "Invite a member" in head_page.text

    invitation = await invited(db, system, marie, irene)
    pending = (await marie.client.get("/family")).text.split('id="pending-invitations"')[1]
    assert "Irene Curie" in pending
    guest_page = await irene.client.get("/family")
    assert "Marie Curie invites you to their family pool." in guest_page.text
    assert f'action="/family/invitations/{invitation}/accept"' in guest_page.text

    joined = await post(irene, f"/family/invitations/{invitation}/accept")
    assert joined.headers["location"] == "/family?done=joined"
    view = await family_of(db, system, irene.member_id)
    assert view.role == "member" and view.pool is not None
    members = (await irene.client.get("/family")).text.split('id="pool-members"')[1]
    assert "Marie Curie" in members and "Irene Curie" in members
    assert "Leave the pool" in (await irene.client.get("/family")).text
    assert "Remove…" not in members  # only the head removes


async def test_decline_leave_remove_and_dissolve(
        clients: list[httpx.AsyncClient], db: Database, system: SystemAccounts) -> None:
    marie, irene, eve = (await member(db, clients[0], "Marie"),
                         await member(db, clients[1], "Irene"),
                         await member(db, clients[2], "Eve"))
    await post(marie, "/family/create")
    declined = await post(irene, f"/family/invitations/"
                                 f"{await invited(db, system, marie, irene)}/decline")
    assert declined.headers["location"] == "/family?done=declined"
    assert (await family_of(db, system, irene.member_id)).pool is None

    for guest in (irene, eve):
        invitation = await invited(db, system, marie, guest)
        await post(guest, f"/family/invitations/{invitation}/accept")

    confirm = await irene.client.get("/family/confirm?action=leave")
    assert confirm.status_code == 200 and "You take about 0 miles" in confirm.text
    left = await submit(irene.client, "/family/confirm?action=leave", "/family/leave", {})
    assert left.headers["location"] == "/family?done=left&miles=0"
    assert (await family_of(db, system, irene.member_id)).pool is None

    removal = await marie.client.get(f"/family/confirm?action=remove&member={eve.member_id}")
    assert "Remove Eve Curie" in removal.text
    removed = await submit(marie.client, "/family", f"/family/members/{eve.member_id}/remove",
                           {})
    assert removed.headers["location"] == "/family?done=removed&miles=0"

    dissolving = await marie.client.get("/family/confirm?action=dissolve")
    assert 'id="shares"' in dissolving.text and "Marie Curie" in dissolving.text
    gone = await submit(marie.client, "/family/confirm?action=dissolve", "/family/dissolve",
                        {})
    assert gone.headers["location"] == "/family?done=dissolved&miles=0"
    assert (await family_of(db, system, marie.member_id)).pool is None

    # Cooling off: what the service refuses, the page says.
    again = await post(irene, "/family/create")
    assert again.status_code == 409
    assert "You left a family pool recently" in again.text


async def test_refusals_are_shown_and_change_nothing(
        clients: list[httpx.AsyncClient], db: Database, system: SystemAccounts) -> None:
    marie, irene, eve = (await member(db, clients[0], "Marie"),
                         await member(db, clients[1], "Irene"),
                         await member(db, clients[2], "Eve"))
    await post(marie, "/family/create")

    for card, status, text in (
            ("", 422, "This field is required."),
            ("<script>alert(1)</script>", 422, "This field is not valid."),
            ("1" * 5000, 422, "This field is not valid."),
            ("99999999", 404, "No member with this card number can be invited."),
            (marie.card, 404, "No member with this card number can be invited.")):
        answer = await post(marie, "/family/invitations", cardNumber=card)
        assert answer.status_code == status, (card, answer.text)
        assert text in answer.text
        assert 'aria-invalid="true"' in answer.text
        assert "<script>alert(1)</script>" not in answer.text
    view = await family_of(db, system, marie.member_id)
    assert view.pool is not None and view.pool.pending_invitations == []

    invitation = await invited(db, system, marie, irene)
    twice = await post(marie, "/family/invitations", cardNumber=irene.card)
    assert twice.status_code == 409
    assert "already has an invitation" in twice.text

    # Someone else's invitation does not exist for Eve; a made-up id neither.
    for target in (invitation, 2**40):
        stolen = await post(eve, f"/family/invitations/{target}/accept")
        assert stolen.status_code == 404
        assert "This invitation does not exist." in stolen.text
    huge = await post(eve, f"/family/invitations/{'9' * 30}/accept")
    assert huge.status_code in (400, 404)
    assert (await family_of(db, system, eve.member_id)).pool is None

    await post(irene, f"/family/invitations/{invitation}/accept")
    not_head = await post(irene, "/family/dissolve")
    assert not_head.status_code == 403
    assert "Only the head of the family pool may do this." in not_head.text
    head_leaves = await post(marie, "/family/leave")
    assert head_leaves.status_code == 409
    assert "The head cannot leave the pool" in head_leaves.text
    outsider = await post(eve, "/family/leave")
    assert outsider.status_code == 404
    assert "You are not in a family pool." in outsider.text
    view = await family_of(db, system, marie.member_id)
    assert view.pool is not None and len(view.pool.members) == 2

    # Confirmation pages are only offered to whom they concern.
    assert (await irene.client.get("/family/confirm?action=dissolve")).status_code == 303
    assert (await eve.client.get("/family/confirm?action=leave")).status_code == 303
    assert (await marie.client.get("/family/confirm?action=boom")).status_code == 400
    assert (await marie.client.get(
        f"/family/confirm?action=remove&member={marie.member_id}")).status_code == 303


async def test_family_page_needs_sign_in(clients: list[httpx.AsyncClient]) -> None:
    response = await clients[0].get("/family")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/family"
    assert re.search(r"/sign-in", response.headers["location"])
