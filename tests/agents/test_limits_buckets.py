"""A budget's buckets (agents.limits.Buckets): totals kept beside them, the window sliding
off the front, late approvals in their place."""

from __future__ import annotations

from decimal import Decimal

from agents.limits import Buckets


def test_adding_keeps_the_totals_and_the_newest_bucket_last() -> None:
    buckets = Buckets()
    for start, amount in ((60, "1.5"), (60, "2"), (120, "10")):
        buckets.add(start, Decimal(amount))
    assert buckets.rows == [[60, 2, "3.5"], [120, 1, "10"]]
    assert (buckets.value("count"), buckets.value("sum")) == (3, Decimal("13.5"))


def test_a_late_approval_goes_into_its_own_bucket_in_order() -> None:
    buckets = Buckets()
    buckets.add(60, Decimal(1))
    buckets.add(180, Decimal(1))
    buckets.add(120, Decimal(5))  # requested before the newest bucket began
    buckets.add(60, Decimal(2))
    assert buckets.rows == [[60, 2, "3"], [120, 1, "5"], [180, 1, "1"]]


def test_loading_drops_the_buckets_the_window_has_left_and_their_totals() -> None:
    buckets = Buckets()
    for start in (0, 60, 120, 180):
        buckets.add(start, Decimal(10))
    stored = buckets.dumps()
    later = Buckets.load(stored, window_start=120)
    assert later.rows == [[120, 1, "10"], [180, 1, "10"]]
    assert (later.value("count"), later.value("sum")) == (2, Decimal(20))
    assert Buckets.load(stored, window_start=999).value("sum") == 0


def test_an_empty_counter_loads_as_nothing_spent() -> None:
    for stored in ("{}", {}, None):
        assert Buckets.load(stored, 0).value("count") == 0
