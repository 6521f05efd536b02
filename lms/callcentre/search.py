"""Finding a member the way a caller identifies themselves: card, e-mail, phone (however it
is typed), name prefix or a ticket number. Every search is in the audit log: it reads
personal data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from lms.callcentre.audit import StaffContext, record
from lms.callcentre.errors import InvalidSearch, InvalidSearchPhone
from lms.callcentre.paging import decode_cursor, encode_cursor
from lms.callcentre.repository import CallCentreRepository
from lms.callcentre.schemas import MemberHit, SearchPage

SEPARATORS = re.compile(r"[\s\-./()]")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    card_number: str | None = None
    email: str | None = None
    phone: str | None = None
    region: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    ticket_number: str | None = None

    def kind(self) -> str:
        given = [k for k, v in (("card", self.card_number), ("email", self.email),
                                ("phone", self.phone), ("ticket", self.ticket_number),
                                ("name", self.name or self.first_name or self.last_name))
                 if v is not None and v.strip()]
        if len(given) != 1 or (self.name and (self.first_name or self.last_name)):
            raise InvalidSearch()
        return given[0]


def normalise_phone(raw: str, region: str | None) -> str:
    """E.164, as members' phones are stored: "+44 20 7946 0958", "020 7946 0958" with region
    GB and "00442079460958" are the same number. A number typed without its country code
    needs the region."""
    compact = SEPARATORS.sub("", raw.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        parsed = phonenumbers.parse(compact, None if compact.startswith("+") else
                                    (region or "").upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidSearchPhone(f"{raw!r}: {exc}; give the number with its country code "
                                 "(+44 ...) or the region (region=GB)") from exc
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def like_prefix(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def split_name(query: SearchQuery) -> tuple[str | None, str | None]:
    """(first, last) prefixes. A free-text ``name`` of one word is a last name; "Ada
    Lovelace" is first then last; "Lovelace, Ada" is last then first."""
    if query.name is None:
        first = (query.first_name or "").strip() or None
        last = (query.last_name or "").strip() or None
        return first, last
    text = " ".join(query.name.split())
    if "," in text:
        last, _, first = (part.strip() for part in text.partition(","))
        return first or None, last or None
    words = text.split(" ")
    if len(words) == 1:
        return None, words[0]
    return words[0], " ".join(words[1:])


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    shown = local[0] + "***" + (local[-1] if len(local) > 2 else "")
    return f"{shown}@{domain}"


def hit(r: Any) -> MemberHit:
    return MemberHit(card_number=r.card_number, first_name=r.first_name,
                     last_name=r.last_name, tier=r.tier, status=r.status,
                     masked_email=mask_email(r.email),
                     merged_into_card_number=r.merged_into_card_number)


class SearchService:
    def __init__(self, session: AsyncSession, ctx: StaffContext) -> None:
        self.repo = CallCentreRepository(session)
        self.ctx = ctx

    async def search(self, query: SearchQuery, *, cursor: str | None,
                     limit: int) -> SearchPage:
        kind = query.kind()
        rows, key_of = await self._find(kind, query, cursor, limit + 1)
        page = rows[:limit]
        next_cursor = encode_cursor(key_of(page[-1])) if len(rows) > limit else None
        hits = [hit(r) for r in page]
        await record(self.repo, self.ctx, "member.search", target_type="member_search",
                     target_id=kind, after={
                         "by": kind, "query": {k: v for k, v in vars_of(query).items() if v},
                         "cards": [h.card_number for h in hits]})
        return SearchPage(items=hits, next_cursor=next_cursor)

    async def _find(self, kind: str, q: SearchQuery, cursor: str | None,
                    limit: int) -> tuple[list[Any], Any]:
        def by_id(r: Any) -> list[Any]:
            return [r.id]

        if kind == "card":
            card = SEPARATORS.sub("", q.card_number or "")
            return await self.repo.search_card(card), by_id
        if kind == "email":
            return await self.repo.search_email((q.email or "").strip().lower()), by_id
        if kind in ("phone", "ticket"):
            key = decode_cursor(cursor, (int,)) or [0]
            if kind == "phone":
                phone = normalise_phone(q.phone or "", q.region)
                return await self.repo.search_phone(phone, key[0], limit), by_id
            ticket = SEPARATORS.sub("", q.ticket_number or "")
            return await self.repo.search_ticket(ticket, key[0], limit), by_id
        first, last = split_name(q)
        key = decode_cursor(cursor, (str, str, int)) or ["", "", 0]
        if last is not None:
            rows = await self.repo.search_last_name(like_prefix(last),
                                                    like_prefix(first or ""), key, limit)
            return rows, lambda r: [r.last_name.lower(), r.first_name.lower(), r.id]
        rows = await self.repo.search_first_name(like_prefix(first or ""), key, limit)
        return rows, lambda r: [r.first_name.lower(), r.last_name.lower(), r.id]


def vars_of(query: SearchQuery) -> dict[str, Any]:
    return {"cardNumber": query.card_number, "email": query.email, "phone": query.phone,
            "region": query.region, "name": query.name, "firstName": query.first_name,
            "lastName": query.last_name, "ticketNumber": query.ticket_number}
