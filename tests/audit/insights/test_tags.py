"""The overview's template filters: durations in words, dollars, emails that wrap at "@"."""

from __future__ import annotations

import pytest

from audit.templatetags.insights_tags import break_at_at, duration, usd


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "-"),
        (45.4, "45 s"),
        (180, "3 min"),
        (200, "3 min 20 s"),
        (7500, "2 h 5 min"),
        (273600, "3 d 4 h"),
    ],
)
def test_a_duration_reads_in_words(seconds, words):
    assert duration(seconds) == words


@pytest.mark.parametrize(
    ("amount", "text"), [(0, "$0.00"), (0.0042, "$0.0042"), (1234.5, "$1,234.50")]
)
def test_a_cost_reads_in_dollars(amount, text):
    assert usd(amount) == text


def test_an_email_may_wrap_only_before_its_at_and_stays_escaped():
    assert break_at_at("<b>@x.com") == "&lt;b&gt;<wbr>@x.com"
    assert break_at_at("key wk_live_ab") == "key wk_live_ab"
