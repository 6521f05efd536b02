"""The tier decision as a pure function: thresholds, either path, windows, one-tier drops."""

from __future__ import annotations

from datetime import UTC, datetime

from lms.tiers.policy import (
    Ladder,
    Progress,
    Qualification,
    Reason,
    TierRule,
    current_window,
    decide,
    review_window,
    upgrade_valid_until,
)


def rule(code: str, rank: int, sm: int, seg: int) -> TierRule:
    return TierRule(code, code.title(), rank, sm, seg, "", "", "")


LADDER = Ladder([rule("BASIC", 0, 0, 0), rule("SILVER", 1, 25000, 30),
                 rule("GOLD", 2, 50000, 60), rule("PLATINUM", 3, 100000, 100)])
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
NONE = Progress(0, 0)


def test_threshold_exactly_reached_upgrades_at_once() -> None:
    change = decide(LADDER, code="BASIC", valid_until=None, now=NOW,
                    policy=Qualification.ROLLING, current=Progress(25000, 0), review=None)
    assert change is not None
    assert (change.to_code, change.reason) == ("SILVER", Reason.UPGRADE)
    assert change.valid_until == datetime(2027, 6, 15, 12, 0, tzinfo=UTC)


def test_one_short_on_both_paths_stays() -> None:
    assert decide(LADDER, code="BASIC", valid_until=None, now=NOW,
                  policy=Qualification.ROLLING, current=Progress(24999, 29),
                  review=None) is None


def test_segments_alone_qualify_and_the_highest_reached_tier_is_granted() -> None:
    change = decide(LADDER, code="BASIC", valid_until=None, now=NOW,
                    policy=Qualification.ROLLING, current=Progress(0, 60), review=None)
    assert change is not None and change.to_code == "GOLD"


def test_calendar_year_window_and_validity() -> None:
    window = current_window(Qualification.CALENDAR, NOW)
    assert window.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert upgrade_valid_until(Qualification.CALENDAR, NOW) == datetime(2028, 1, 1, tzinfo=UTC)
    assert review_window(datetime(2028, 1, 1, tzinfo=UTC)).start == datetime(
        2027, 1, 1, tzinfo=UTC)


def test_rolling_window_is_twelve_months_back() -> None:
    window = current_window(Qualification.ROLLING, NOW)
    assert window.start == datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
    assert window.end > NOW


def test_no_downgrade_before_the_period_ends() -> None:
    until = datetime(2026, 12, 31, tzinfo=UTC)
    assert decide(LADDER, code="PLATINUM", valid_until=until, now=NOW,
                  policy=Qualification.ROLLING, current=NONE, review=None) is None


def test_downgrade_drops_one_tier_only() -> None:
    until = datetime(2026, 6, 1, tzinfo=UTC)
    change = decide(LADDER, code="PLATINUM", valid_until=until, now=NOW,
                    policy=Qualification.ROLLING, current=NONE, review=NONE)
    assert change is not None
    assert (change.to_code, change.reason) == ("GOLD", Reason.DOWNGRADE)
    assert change.valid_until == datetime(2027, 6, 1, tzinfo=UTC)


def test_downgrade_to_base_has_no_validity() -> None:
    change = decide(LADDER, code="SILVER", valid_until=datetime(2026, 6, 1, tzinfo=UTC),
                    now=NOW, policy=Qualification.ROLLING, current=NONE, review=NONE)
    assert change is not None and (change.to_code, change.valid_until) == ("BASIC", None)


def test_requalified_keeps_the_tier_for_another_period() -> None:
    until = datetime(2026, 6, 1, tzinfo=UTC)
    change = decide(LADDER, code="GOLD", valid_until=until, now=NOW,
                    policy=Qualification.ROLLING, current=NONE, review=Progress(0, 60))
    assert change is not None
    assert (change.to_code, change.reason) == ("GOLD", Reason.REQUALIFIED)
    assert change.valid_until == datetime(2027, 6, 1, tzinfo=UTC)


def test_upgrade_wins_over_a_due_review() -> None:
    change = decide(LADDER, code="SILVER", valid_until=datetime(2026, 6, 1, tzinfo=UTC),
                    now=NOW, policy=Qualification.ROLLING, current=Progress(100000, 0),
                    review=NONE)
    assert change is not None and (change.to_code, change.reason) == ("PLATINUM",
                                                                      Reason.UPGRADE)
