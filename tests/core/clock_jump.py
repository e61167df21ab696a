"""A pytest plugin that moves the clock 10 minutes forward between collection and the tests.

Loaded with ``-p tests.core.clock_jump`` by tests/core/test_suite_clock.py: a value taken
from the clock while the test modules were imported is then 10 minutes old when the tests
run, as it is on a loaded machine whose suite runs for longer than that.
"""

from __future__ import annotations

import datetime as dt

import freezegun
import pytest

JUMP = dt.timedelta(minutes=10)
_freezers: list = []


def pytest_collection_finish(session: pytest.Session) -> None:
    freezer = freezegun.freeze_time(dt.datetime.now(dt.UTC) + JUMP, tick=True)
    freezer.start()
    _freezers.append(freezer)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _freezers:
        _freezers.pop().stop()
