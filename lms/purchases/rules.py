"""The rules of buying miles and status, as data: parsed from the programme file, stored as
versions with an effective date (``purchase_rules``), and the pure arithmetic of prices and
eligibility.

Mile purchases: a member buys between ``minMiles`` and ``maxMiles`` in steps of ``stepMiles``
(counted from ``minMiles``). The whole purchase is priced at the band its size falls in (the
last band whose ``fromMiles`` it reaches), ``pricePerThousand`` minor units per 1,000 miles,
rounded up to a whole minor unit. At most ``yearlyCap`` miles per member and calendar year.

Status purchases: a tier above the member's is offered when the member has earned at least
``minProgressPercent`` of its status-mile or of its segment threshold in the current
qualification window (and not yet all of both); the price is the tier's ``price`` plus
``perMissingStatusMile`` for each status mile still missing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec

from lms.tiers.policy import Progress, TierRule

MILES = "miles"
STATUS = "status"
SECTIONS = {"mile_purchase": MILES, "status_purchase": STATUS}

Currency = msgspec.Meta(pattern=r"^[A-Z]{3}$")


class PriceBand(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    from_miles: int
    price_per_thousand: int  # minor units per 1,000 miles


class MileRules(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    currency: str
    min_miles: int
    max_miles: int
    step_miles: int
    yearly_cap: int
    bands: list[PriceBand]

    def check(self) -> None:
        if not (0 < self.min_miles <= self.max_miles and self.step_miles > 0):
            raise ValueError("mile_purchase: need 0 < min_miles <= max_miles, step_miles > 0")
        if self.yearly_cap < self.min_miles:
            raise ValueError("mile_purchase: yearly_cap is below min_miles")
        if not self.bands or self.bands[0].from_miles > self.min_miles:
            raise ValueError("mile_purchase: the first band must start at or below min_miles")
        starts = [b.from_miles for b in self.bands]
        if starts != sorted(set(starts)) or any(b.price_per_thousand <= 0
                                                for b in self.bands):
            raise ValueError("mile_purchase: bands must ascend and have positive prices")

    def allowed(self, miles: int) -> bool:
        return (self.min_miles <= miles <= self.max_miles
                and (miles - self.min_miles) % self.step_miles == 0)

    def band(self, miles: int) -> PriceBand:
        return [b for b in self.bands if b.from_miles <= miles][-1]

    def price(self, miles: int) -> int:
        return -(-miles * self.band(miles).price_per_thousand // 1000)


class TierPrice(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    tier: str
    price: int
    per_missing_status_mile: int = 0


class StatusRules(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    currency: str
    min_progress_percent: int
    prices: list[TierPrice]

    def check(self) -> None:
        if not 0 < self.min_progress_percent <= 100:
            raise ValueError("status_purchase: min_progress_percent must be 1-100")
        if any(p.price <= 0 or p.per_missing_status_mile < 0 for p in self.prices):
            raise ValueError("status_purchase: prices must be positive")

    def price_of(self, code: str) -> TierPrice | None:
        return next((p for p in self.prices if p.tier == code), None)


def within_reach(tier: TierRule, progress: Progress, percent: int) -> bool:
    """At least ``percent`` of either threshold earned (integers, no rounding), and the tier
    not reached already."""
    if tier.reached_by(progress.status_miles, progress.segments):
        return False
    return (progress.status_miles * 100 >= percent * tier.status_miles
            or progress.segments * 100 >= percent * tier.segments)


def status_price(rules: StatusRules, tier: TierRule, progress: Progress) -> int | None:
    price = rules.price_of(tier.code)
    if price is None:
        return None
    missing = max(0, tier.status_miles - progress.status_miles)
    return price.price + missing * price.per_missing_status_mile


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = str(key).split("_")
            out[head + "".join(w.title() for w in rest)] = _camel(item)
        return out
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def decode(kind: str, body: dict[str, Any]) -> MileRules | StatusRules:
    rules: MileRules | StatusRules
    if kind == MILES:
        rules = msgspec.convert(body, MileRules)
    else:
        rules = msgspec.convert(body, StatusRules)
    rules.check()
    return rules


def parse_sections(data: dict[str, Any]) -> list[tuple[str, date, dict[str, Any]]]:
    """(kind, effective_from, body) of every purchase section of a programme file."""
    versions = []
    for section, kind in SECTIONS.items():
        for table in data.get(section, []):
            fields = dict(table)
            since = fields.pop("effective_from")
            if not isinstance(since, date):
                raise ValueError(f"{section}: effective_from must be a date")
            body = _camel(fields)
            decode(kind, body)
            versions.append((kind, since, body))
    return versions
