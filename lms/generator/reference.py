"""Reference data the generator draws from: phone number stems valid per region, and a fixed
route network with great-circle distances from airportsdata."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import airportsdata
import phonenumbers

# How many random endings a stem must accept, all valid, before members are given it: the
# check runs once per region at start-up, never per member.
STEM_PROBES = 60
SUFFIX_DIGITS = 4


def phone_stems(region: str, rng: random.Random) -> list[str]:
    """E.164 prefixes of this region's example numbers (mobile and fixed line) after which
    any ``SUFFIX_DIGITS`` digits make a valid number, stored as lms.accounts stores phones."""
    stems: list[str] = []
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        stem = e164[:-SUFFIX_DIGITS]
        if all(_valid(f"{stem}{rng.randrange(10 ** SUFFIX_DIGITS):0{SUFFIX_DIGITS}d}", region)
               for _ in range(STEM_PROBES)) and stem not in stems:
            stems.append(stem)
    if not stems:
        raise RuntimeError(f"no usable phone number stem for region {region}")
    return stems


def _valid(e164: str, region: str) -> bool:
    number = phonenumbers.parse(e164, None)
    return bool(phonenumbers.is_valid_number(number)
                and phonenumbers.region_code_for_number(number) == region)


@dataclass(frozen=True, slots=True)
class Route:
    origin: str
    destination: str
    miles: int

    @property
    def long_haul(self) -> bool:
        return self.miles >= 2500


# The demo carrier's network from a few hubs; each route is flown both ways.
ROUTE_PAIRS = (
    "LHR-JFK", "LHR-EWR", "LHR-CDG", "LHR-FRA", "LHR-MAD", "LHR-FCO", "LHR-DME", "LHR-DXB",
    "LHR-SIN", "LHR-HKG", "LHR-LAX", "LHR-BOS", "LHR-EDI", "LHR-MAN", "LHR-AMS", "LHR-DUB",
    "FRA-JFK", "FRA-MUC", "FRA-BER", "FRA-ORD", "FRA-NRT", "FRA-VIE", "CDG-NCE", "CDG-MAD",
    "CDG-YUL", "CDG-JFK", "MAD-BCN", "MAD-MEX", "MAD-BOG", "FCO-MXP", "DME-LED", "JFK-LAX",
    "JFK-MIA", "JFK-SFO", "LGW-JFK", "LHR-SVO",
)

# (booking class, miles %, status miles %) of the demo carrier LM (programme/demo.toml),
# grouped by cabin.
ECONOMY = (("Y", 100, 100), ("B", 100, 100), ("M", 75, 75), ("K", 50, 50), ("Q", 25, 25))
PREMIUM = (("W", 125, 125), ("J", 200, 200), ("C", 175, 175), ("D", 150, 150),
           ("F", 300, 300))
MIN_MILES = 500
MIN_STATUS_MILES = 250


def great_circle_miles(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 3958.8 * math.asin(math.sqrt(a)))


def routes() -> list[Route]:
    airports = airportsdata.load("IATA")
    out: list[Route] = []
    for pair in ROUTE_PAIRS:
        a, b = pair.split("-")
        miles = great_circle_miles(airports[a]["lat"], airports[a]["lon"],
                                   airports[b]["lat"], airports[b]["lon"])
        out += [Route(a, b, miles), Route(b, a, miles)]
    return out
