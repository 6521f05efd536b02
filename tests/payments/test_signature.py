"""The webhook signature: HMAC-SHA256 over the timestamp and the raw body, within a tolerance."""

from __future__ import annotations

import pytest

from lms.payments.signature import SignatureError, compute, sign, verify

BODY = b'{"paymentId":"pay_1","status":"succeeded"}'


def test_a_signature_made_now_verifies() -> None:
    assert verify("s3cret", sign("s3cret", BODY, 1_000_000), BODY, tolerance=300,
                  now=1_000_100) == 1_000_000


@pytest.mark.parametrize("header", [
    None, "", "v1=abc", "t=notanumber,v1=abc", "t=1000000",
    f"t=1000000,v1={compute('other', 1_000_000, BODY)}",
    # the timestamp is signed too: moving it breaks the signature
    f"t=1000001,v1={compute('s3cret', 1_000_000, BODY)}",
])
def test_missing_malformed_or_wrong_signatures_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError) as caught:
        verify("s3cret", header, BODY, tolerance=300, now=1_000_000)
    assert not caught.value.stale


def test_a_changed_body_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify("s3cret", sign("s3cret", BODY, 1_000_000), BODY + b" ", tolerance=300,
               now=1_000_000)


@pytest.mark.parametrize("now", [1_000_301, 999_699])
def test_a_signature_outside_the_tolerance_is_stale(now: int) -> None:
    with pytest.raises(SignatureError) as caught:
        verify("s3cret", sign("s3cret", BODY, 1_000_000), BODY, tolerance=300, now=now)
    assert caught.value.stale


def test_at_the_edge_of_the_tolerance_it_still_verifies() -> None:
    verify("s3cret", sign("s3cret", BODY, 1_000_000), BODY, tolerance=300, now=1_000_300)


def test_one_of_several_signatures_may_match_during_a_secret_rotation() -> None:
    header = f"t=1000000,v1={compute('old', 1_000_000, BODY)},v1={compute('new', 1_000_000, BODY)}"
    verify("new", header, BODY, tolerance=300, now=1_000_000)
