"""Family pools over the API: create, invite, accept, decline, limits on membership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.family.service import FamilyService, FamilyTerms
from lms.ledger.service import SystemAccounts
from lms.settings import Settings
from tests.family.support import M, make_member, problem, set_status


async def family_terms(db: Database, system: SystemAccounts) -> FamilyTerms:
    return await db.transaction(lambda s: FamilyService(s, system).terms())


async def create_pool(client: httpx.AsyncClient, head: M) -> dict[str, object]:
    response = await client.post("/v1/me/family", headers=head.key())
    assert response.status_code == 201, response.text
    pool: dict[str, object] = response.json()["pool"]
    return pool


async def invite(client: httpx.AsyncClient, head: M, invitee: M) -> httpx.Response:
    return await client.post("/v1/me/family/invitations", headers=head.key(),
                             json={"cardNumber": invitee.card})


async def join(client: httpx.AsyncClient, head: M, invitee: M) -> None:
    sent = await invite(client, head, invitee)
    assert sent.status_code == 201, sent.text
    accepted = await client.post(
        f"/v1/me/family/invitations/{sent.json()['id']}/accept", headers=invitee.key())
    assert accepted.status_code == 200, accepted.text


async def test_create_invite_accept_decline(client: httpx.AsyncClient, db: Database,
                                            system: SystemAccounts,
                                            settings: Settings) -> None:
    head, ben, cleo, dan = [await make_member(db, system, settings, first_name=n)
                            for n in ("Ann", "Ben", "Cleo", "Dan")]
    assert (await client.get("/v1/me/family", headers=head.headers)).json() == {
        "role": None, "pool": None, "invitationsReceived": []}
    pool = await create_pool(client, head)
    assert pool["headMemberId"] == head.id
    assert pool["balance"] == {"posted": 0, "held": 0, "available": 0}

    to_ben = await invite(client, head, ben)
    assert to_ben.status_code == 201, to_ben.text
    assert to_ben.json()["status"] == "pending"
    problem(await invite(client, head, ben), 409, "already_invited")
    to_cleo = (await invite(client, head, cleo)).json()
    ben_view = (await client.get("/v1/me/family", headers=ben.headers)).json()
    assert ben_view["pool"] is None
    [received] = ben_view["invitationsReceived"]
    assert (received["id"], received["headCardNumber"]) == (to_ben.json()["id"], head.card)

    # Only the invitee may answer; to anyone else the invitation does not exist.
    problem(await client.post(f"/v1/me/family/invitations/{to_ben.json()['id']}/accept",
                              headers=dan.key()), 404, "invitation_not_found")
    accepted = await client.post(f"/v1/me/family/invitations/{to_ben.json()['id']}/accept",
                                 headers=ben.key())
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == "member"
    problem(await client.post(f"/v1/me/family/invitations/{to_ben.json()['id']}/accept",
                              headers=ben.key()), 409, "invitation_not_pending")
    declined = await client.post(f"/v1/me/family/invitations/{to_cleo['id']}/decline",
                                 headers=cleo.key())
    assert declined.json()["status"] == "declined"
    problem(await client.post(f"/v1/me/family/invitations/{to_cleo['id']}/accept",
                              headers=cleo.key()), 409, "invitation_not_pending")

    view = (await client.get("/v1/me/family", headers=head.headers)).json()
    assert [(m["memberId"], m["role"]) for m in view["pool"]["members"]] == [
        (head.id, "head"), (ben.id, "member")]
    assert view["pool"]["pendingInvitations"] == []
    # Everyone in the pool sees the same pool; only the head invites.
    assert (await client.get("/v1/me/family", headers=ben.headers)).json()["pool"]["id"] == \
        pool["id"]
    problem(await invite(client, ben, dan), 403, "not_pool_head")
    problem(await invite(client, head, ben), 409, "already_in_pool")
    problem(await client.post("/v1/me/family/invitations", headers=head.key(),
                              json={"cardNumber": "7000000000000"}), 404, "invitee_not_found")


async def test_one_pool_per_member(client: httpx.AsyncClient, db: Database,
                                   system: SystemAccounts, settings: Settings) -> None:
    first, second, ben = [await make_member(db, system, settings) for _ in range(3)]
    await create_pool(client, first)
    await create_pool(client, second)
    late = (await invite(client, second, ben)).json()
    await join(client, first, ben)
    problem(await client.post(f"/v1/me/family/invitations/{late['id']}/accept",
                              headers=ben.key()), 409, "already_in_pool")
    problem(await client.post("/v1/me/family", headers=ben.key()), 409, "already_in_pool")
    problem(await client.post("/v1/me/family", headers=first.key()), 409, "already_in_pool")
    # Inviting a member of another pool is allowed; accepting is what is refused.
    sent = await invite(client, second, first)
    assert sent.status_code == 201
    problem(await client.post(f"/v1/me/family/invitations/{sent.json()['id']}/accept",
                              headers=first.key()), 409, "already_in_pool")


async def test_at_most_max_members_pending_invitations_included(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    terms = await family_terms(db, system)
    assert terms.max_members == 8  # programme/demo.toml
    head = await make_member(db, system, settings)
    await create_pool(client, head)
    others = [await make_member(db, system, settings) for _ in range(terms.max_members)]
    for member in others[:terms.max_members - 3]:
        await join(client, head, member)
    pending = [(await invite(client, head, m)).json() for m in others[-3:-1]]
    # Head + 5 members + 2 pending = 8.
    problem(await invite(client, head, others[-1]), 409, "pool_full")
    await client.post(f"/v1/me/family/invitations/{pending[0]['id']}/decline",
                      headers=others[-3].key())
    sent = await invite(client, head, others[-1])
    assert sent.status_code == 201, sent.text
    for member, invitation in ((others[-2], pending[1]), (others[-1], sent.json())):
        accepted = await client.post(f"/v1/me/family/invitations/{invitation['id']}/accept",
                                     headers=member.key())
        assert accepted.status_code == 200, accepted.text
    view = (await client.get("/v1/me/family", headers=head.headers)).json()["pool"]
    assert len(view["members"]) == terms.max_members
    problem(await invite(client, head, others[-3]), 409, "pool_full")


async def test_cooling_off_after_leaving(client: httpx.AsyncClient, db: Database,
                                         system: SystemAccounts, settings: Settings) -> None:
    terms = await family_terms(db, system)
    head, ben, other_head = [await make_member(db, system, settings) for _ in range(3)]
    await create_pool(client, head)
    await join(client, head, ben)
    problem(await client.post("/v1/me/family/leave", headers=head.key()), 409,
            "head_cannot_leave")
    left = await client.post("/v1/me/family/leave", headers=ben.key())
    assert left.status_code == 200, left.text
    assert left.json()["reason"] == "left"
    assert (await client.get("/v1/me/family", headers=ben.headers)).json()["pool"] is None
    problem(await client.post("/v1/me/family", headers=ben.key()), 409, "family_cooling_off")
    await create_pool(client, other_head)
    invitation = (await invite(client, other_head, ben)).json()
    problem(await client.post(f"/v1/me/family/invitations/{invitation['id']}/accept",
                              headers=ben.key()), 409, "family_cooling_off")

    async def age(days: int) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(text(
                "UPDATE family_members SET left_at = :d, joined_at = :j "
                "WHERE member_id = :m AND left_at IS NOT NULL"),
                {"d": datetime.now(UTC) - timedelta(days=days),
                 "j": datetime.now(UTC) - timedelta(days=days + 1), "m": ben.id})
        await db.transaction(work)

    await age(terms.cooling_off_days - 1)
    problem(await client.post(f"/v1/me/family/invitations/{invitation['id']}/accept",
                              headers=ben.key()), 409, "family_cooling_off")
    await age(terms.cooling_off_days)
    accepted = await client.post(f"/v1/me/family/invitations/{invitation['id']}/accept",
                                 headers=ben.key())
    assert accepted.status_code == 200, accepted.text


async def test_head_removes_a_member_who_then_cools_off(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    head, ben, cleo = [await make_member(db, system, settings) for _ in range(3)]
    await create_pool(client, head)
    await join(client, head, ben)
    await join(client, head, cleo)
    problem(await client.post(f"/v1/me/family/members/{cleo.id}/remove", headers=ben.key()),
            403, "not_pool_head")
    removed = await client.post(f"/v1/me/family/members/{ben.id}/remove", headers=head.key())
    assert removed.status_code == 200, removed.text
    assert removed.json()["reason"] == "removed"
    problem(await client.post(f"/v1/me/family/members/{ben.id}/remove", headers=head.key()),
            404, "pool_member_not_found")
    problem(await client.post("/v1/me/family", headers=ben.key()), 409, "family_cooling_off")
    members = (await client.get("/v1/me/family", headers=cleo.headers)).json()["pool"][
        "members"]
    assert [m["memberId"] for m in members] == [head.id, cleo.id]


async def test_a_locked_member_cannot_create_join_or_invite(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    head, ben, locked = [await make_member(db, system, settings) for _ in range(3)]
    await set_status(db, locked.id, "locked")
    problem(await client.post("/v1/me/family", headers=locked.key()), 403, "member_locked")
    await create_pool(client, head)
    # A locked member cannot be invited either (the same answer as an unknown card).
    problem(await invite(client, head, locked), 404, "invitee_not_found")
    invitation = (await invite(client, head, ben)).json()
    await set_status(db, ben.id, "locked")
    problem(await client.post(f"/v1/me/family/invitations/{invitation['id']}/accept",
                              headers=ben.key()), 403, "member_locked")
    await set_status(db, ben.id, "active")
    await set_status(db, head.id, "locked")
    problem(await invite(client, head, locked), 403, "member_locked")


async def test_removing_an_id_beyond_int4_is_not_found_not_an_error(
        client: httpx.AsyncClient, db: Database, system: SystemAccounts,
        settings: Settings) -> None:
    """Found by fuzzing: the per-member advisory lock took the id as an int4 key, and any
    larger id (ids are bigints) made the request fail with 500."""
    head = await make_member(db, system, settings)
    await create_pool(client, head)
    problem(await client.post(f"/v1/me/family/members/{2**31 + head.id}/remove",
                              headers=head.key()), 404, "pool_member_not_found")
    problem(await client.post(f"/v1/me/family/members/{2**63}/remove", headers=head.key()),
            422, "validation_error")
