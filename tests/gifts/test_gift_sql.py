# ruff: noqa: RUF001 - look-alike letters are what these names are made of
"""What gift_send() (migration 0024) computes in SQL that the Python code computed before it,
proven equal to the Python that still defines it: the last name as compared
(lms.gifts.service.name_key) and the starts of a member's day and year in their time zone
(lms.gifts.service.local_starts)."""

from __future__ import annotations

import random
import unicodedata
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st

from lms.db import Database
from lms.gifts.service import local_starts, name_key

NAMES = [
    "Müller-Núñez", "MULLER NUNEZ", " muller  nunez", "de la Cruz", "De La  Cruz", "Smith",
    "Straße", "STRASSE", "strasse", "Groß", "GROSS", "ẞ", "Øster", "Ærø", "Łukasz", "İnce",
    "ınce", "Iğdır", "Ŀlobet", "ǅurić", "Ǆ", "ǆ", "ﬁnch", "FINCH", "Ångström", "Åström",
    "Ñúñez", "Çelik", "Šťastný", "Dvořák", "Nguyễn", "Trần", "Đặng", "Ōtsuka", "Ōno",
    "Иванов", "ИВАНОВ", "Ёлкин", "Елкин", "Йорданов", "Ії", "Ґалаґан",
    "ΟΔΥΣΣΕΥΣ", "Οδυσσεύς", "ΣΙΣΥΦΟΣ", "σίσυφος", "ς", "Σ", "ΐ", "ΰ", "ͅ",
    "e\u0301", "é", "e\u0301\u0302", "\u0301", "a\u0308\u0323", "a\u0323\u0308",
    "김", "김민준", "ᄀ", "李", "王小明", "山田", "ﾔﾏﾀﾞ", "ヤマダ", "Ｙａｍａｄａ", "①",
    "ǰ", "ŉ", "ſ", "K", "Å", "Ω", "ﬀ", "ﬃ", "ﬆ", "ǈ", "Ꭰ", "ꭰ",
    "O'Brien", "O’Brien", "van der Berg", "van-der-Berg", "van\u00a0der\u2003Berg",
    "\tSmith\n", "Smith\x1c\x1dJones", "Smith\u2028Jones", "Smith\u0085Jones",
    "Smith\u1680Jones", "Smith\u3000Jones", "a\u00adb", "a\u200bb", "a\u200db",
    "‐‑‒–—―", "a‐b", "Jean\u2010Luc", "-", "--", " - ", "", " ", "x", "X", "\u00a8",
    "\u02dc", "\u0384", "\u1fef", "\ufb00", "\U0001d400\U0001d41a", "\U0001f600", "\u0130",
    "\u1e9e", "\u03d0", "\u03f4", "\u2126", "\u212a", "\u212b", "\ua7ae", "\U00010400",
]


async def sql_keys(db: Database, names: list[str]) -> list[str]:
    keys: list[str] = await db.autocommit(lambda conn: conn.fetchval(
        "SELECT array_agg(gift_name_key(n) ORDER BY i) "
        "FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i)", names))
    return keys


async def test_the_name_key_in_sql_is_name_key_on_listed_names(db: Database) -> None:
    assert await sql_keys(db, NAMES) == [name_key(n) for n in NAMES]
    assert name_key("ΟΔΥΣΣΕΥΣ") == name_key("οδυσσευς")  # the final sigma too


async def test_the_name_key_in_sql_is_name_key_for_every_code_point(db: Database) -> None:
    """Every code point (PostgreSQL text holds all but NUL and the surrogates), in runs of a
    hundred consecutive ones, and each one alone between letters."""
    points = [chr(p) for p in range(1, 0x110000) if not 0xD800 <= p <= 0xDFFF]
    runs = ["".join(points[i:i + 100]) for i in range(0, len(points), 100)]
    assert await sql_keys(db, runs) == [name_key(r) for r in runs]
    # Alone, where the table does the work: every code point the Python changes.
    changed = [c for c in points if name_key(f"a{c}b") != f"a{c}b"]
    singles = [f"A{c}b" for c in changed] + [f" {c} " for c in changed]
    assert await sql_keys(db, singles) == [name_key(s) for s in singles]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                               blacklist_characters=["\x00"]),
                        max_size=40), min_size=50, max_size=50))
async def test_the_name_key_in_sql_is_name_key_on_random_text(db: Database,
                                                              names: list[str]) -> None:
    assert await sql_keys(db, names) == [name_key(n) for n in names]


def test_name_key_works_character_by_character() -> None:
    """What the SQL version relies on: folding, decomposing and dropping combining marks a
    whole name is doing it to each character in turn (the canonical reordering that NFKD
    does over a whole string moves combining marks only, and they are dropped)."""
    rng = random.Random(7)
    pool = [chr(p) for p in range(1, 0x30000) if not 0xD800 <= p <= 0xDFFF]
    marks = [c for c in pool if unicodedata.combining(c)]

    def per_char(text: str) -> str:
        mapped = "".join(
            "".join(c for c in unicodedata.normalize("NFKD", ch.casefold())
                    if not unicodedata.combining(c)) for ch in text)
        return " ".join(mapped.replace("-", " ").split())

    for _ in range(20_000):
        text = "".join(rng.choice(marks if rng.random() < 0.4 else pool)
                       for _ in range(rng.randint(0, 12)))
        assert per_char(text) == name_key(text)


def moments(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Instants around each of the zone's clock changes between start and end (found a day
    at a time, then hour by hour and every 10 minutes near it), and a few ordinary ones."""
    found: list[datetime] = [start, start + timedelta(hours=13, minutes=7)]
    day = start
    while day < end:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            found += [day + timedelta(hours=h) for h in range(-2, 51)]
            hour = day
            while hour < following and (hour.astimezone(zone).utcoffset()
                                        == day.astimezone(zone).utcoffset()):
                hour += timedelta(hours=1)
            found += [hour + timedelta(minutes=m) for m in range(-180, 181, 10)]
            found += [hour + timedelta(microseconds=u) for u in (-1, 0, 1)]
        day = following
    return found


async def test_local_starts_in_sql_are_local_starts_in_every_zone(db: Database) -> None:
    """Around every clock change of 2026-2027 in every zone zoneinfo knows, and zones it does
    not know (counted in UTC)."""
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 2, tzinfo=UTC)
    cases: list[tuple[datetime, str]] = []
    for name in sorted(available_timezones()):
        cases += [(moment, name) for moment in moments(ZoneInfo(name), start, end)]
    for name in ("Not/AZone", "", "UTC", "Europe/Nowhere", "bad zone"):
        cases += [(start + timedelta(hours=h * 7), name) for h in range(5)]
    # As asyncpg sends them: in UTC (an aware datetime in a gap or a repeat compares unequal
    # to every datetime of another zone, even to the instant it stands for).
    expected = [tuple(s.astimezone(UTC) for s in local_starts(moment, name))
                for moment, name in cases]
    rows = await db.autocommit(lambda conn: conn.fetch(
        "SELECT s.day_start, s.year_start FROM unnest($1::timestamptz[], $2::text[]) "
        "WITH ORDINALITY AS c(moment, zone, i), gift_local_starts(c.moment, c.zone) AS s "
        "ORDER BY c.i", [c[0] for c in cases], [c[1] for c in cases]))
    got = [(r["day_start"], r["year_start"]) for r in rows]
    wrong = [(case, e, g) for case, e, g in zip(cases, expected, got, strict=True) if e != g]
    assert not wrong, (len(wrong), wrong[:5])
    assert len(cases) > 50_000
    # Among them, local midnights that a clock change repeats (Atlantic/Azores, America/Havana
    # ...), in both passes: where PostgreSQL's own reading differs from zoneinfo's.
    locals_ = [moment.astimezone(ZoneInfo(name)) for moment, name in cases
               if name in ("Atlantic/Azores", "America/Havana")]
    assert {t.fold for t in locals_ if t.hour == 0} == {0, 1}


async def test_a_zone_read_as_its_full_name_not_as_an_abbreviation(db: Database) -> None:
    """PostgreSQL's AT TIME ZONE reads "CET" as the fixed abbreviation (+01 all year); the
    zone file, which zoneinfo reads, may have summer time."""
    summer = datetime(2026, 7, 1, 12, tzinfo=UTC)
    names = ["CET", "EET", "MET", "WET", "EST5EDT", "Europe/Paris"]
    rows = await db.autocommit(lambda conn: conn.fetch(
        "SELECT s.day_start, s.year_start FROM unnest($2::text[]) WITH ORDINALITY AS z(n, i), "
        "gift_local_starts($1, z.n) AS s ORDER BY z.i", summer, names))
    for name, got in zip(names, rows, strict=True):
        assert (got["day_start"], got["year_start"]) == tuple(
            s.astimezone(UTC) for s in local_starts(summer, name)), name
