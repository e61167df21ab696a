"""Queueing a task after commit (wardenproject/tasks.py) when the broker does not answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import ClosingServer, broker_switched
from wardenproject.tasks import enqueue_now
from webhooks.tasks import deliver

pytestmark = pytest.mark.redis


@pytest.fixture
def broken_broker(closing_server) -> Iterator[ClosingServer]:
    with broker_switched(f"redis://127.0.0.1:{closing_server.port}/0"):
        yield closing_server


def test_after_a_failed_enqueue_the_process_leaves_the_broker_alone_for_a_moment(broken_broker):
    """On a broker that hangs each attempt costs its timeouts (seconds), and a decision or a
    held check queues one after commit: one attempt a second, not one per request."""
    assert enqueue_now(deliver, "dlv_1") is False
    tried = broken_broker.count()
    assert tried >= 1
    assert [enqueue_now(deliver, f"dlv_{n}") for n in range(2, 6)] == [False] * 4
    assert broken_broker.count() == tried
