"""The programme file: earn rules and promotions in readable TOML (see programme/demo.toml).

Loading is idempotent: rule versions and promotions already present are left as they are,
so a file can be loaded again after adding versions to it.
"""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from lms.accrual.errors import InvalidRule
from lms.accrual.schemas import EarnRuleIn, PromotionIn
from lms.accrual.service import ProgrammeRules
from lms.db import Database, RawConnection
from lms.purchases.repository import store_rule
from lms.purchases.rules import parse_sections as parse_purchase_rules

CLASS_FIELDS = ("cabin", "milesPercent", "statusMilesPercent", "segments", "eligible")
CARRIER_FIELDS = {
    "name": "name", "earn_method": "earnMethod", "own_airline": "ownAirline",
    "min_miles_per_segment": "minMilesPerSegment",
    "min_status_miles_per_segment": "minStatusMilesPerSegment",
    "revenue_currency": "revenueCurrency", "revenue_miles_per_unit": "revenueMilesPerUnit",
    "revenue_miles_per_unit_by_tier": "revenueMilesPerUnitByTier",
}


@dataclass
class Programme:
    rules: list[EarnRuleIn] = field(default_factory=list)
    promotions: list[PromotionIn] = field(default_factory=list)
    # (kind, effective_from, body) of the mile and status purchase sections
    purchase_rules: list[tuple[str, date, dict[str, Any]]] = field(default_factory=list)


@dataclass
class LoadReport:
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def parse(text: str) -> Programme:
    """The rules and promotions of a programme file; InvalidRule says what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRule(f"not TOML: {exc}") from exc
    programme = Programme()
    try:
        for carrier in data.get("carrier", []):
            code, since = carrier["code"], carrier["effective_from"]
            if not carrier.get("only_classes"):
                body = {CARRIER_FIELDS[k]: v for k, v in carrier.items() if k in CARRIER_FIELDS}
                programme.rules.append(EarnRuleIn("carrier", code, since, body))
            for row in carrier.get("classes", []):
                booking_class, *terms = row
                programme.rules.append(EarnRuleIn(
                    "booking_class", f"{code}/{booking_class}", since,
                    dict(zip(CLASS_FIELDS, terms, strict=True))))
        for bonus in data.get("tier_bonus", []):
            programme.rules.append(EarnRuleIn("tier_bonus", bonus["tier"],
                                              bonus["effective_from"],
                                              {"bonusPercent": bonus["bonus_percent"]}))
        for promo in data.get("promotion", []):
            programme.promotions.append(msgspec.convert(
                {_camel(k): v for k, v in promo.items()}, PromotionIn))
        programme.purchase_rules = parse_purchase_rules(data)
    except (KeyError, ValueError, TypeError, msgspec.ValidationError) as exc:
        raise InvalidRule(f"programme file: {exc!r}") from exc
    return programme


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


async def load_programme(conn: RawConnection, programme: Programme, created_by: str
                         ) -> LoadReport:
    rules = ProgrammeRules(conn)
    report = LoadReport()
    for rule in programme.rules:
        what = f"{rule.kind} {rule.key} from {rule.effective_from}"
        added = await rules.add_rule(rule, created_by, if_absent=True)
        (report.added if added else report.kept).append(what)
    for promo in programme.promotions:
        added_promo = await rules.add_promotion(promo, if_absent=True)
        (report.added if added_promo else report.kept).append(f"promotion {promo.code}")
    for kind, since, body in programme.purchase_rules:
        added_rule = await store_rule(conn, kind, since, body, created_by)
        (report.added if added_rule else report.kept).append(
            f"{kind} purchase rules from {since}")
    return report


async def load_file(db: Database, path: Path, created_by: str = "file") -> LoadReport:
    programme = parse(await asyncio.to_thread(path.read_text, encoding="utf-8"))

    async def work(conn: RawConnection) -> LoadReport:
        return await load_programme(conn, programme, f"{created_by}:{path.name}")

    return await db.raw_transaction(work)


def demo_programme_path() -> Path:
    from lms.settings import PROJECT_ROOT

    return PROJECT_ROOT / "programme" / "demo.toml"


def describe(report: LoadReport) -> str:
    lines: list[Any] = [f"programme rules: {len(report.added)} added, "
                        f"{len(report.kept)} already there"]
    lines += [f"  + {a}" for a in report.added]
    return "\n".join(lines)
