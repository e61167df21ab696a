"""Queueing a task after commit (wardenproject/tasks.py) when the broker does not answer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.live import broker_switched
from wardenproject.tasks import enqueue_now
from webhooks.tasks import deliver

pytestmark = pytest.mark.redis


class BrokenBroker:
    """A TCP server that accepts every connection and closes it at once: a Redis that is
    there but answers nothing. Counts the connections it was asked for."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            conn.close()

    def count(self) -> int:
        with self._lock:
            return self.connections

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def broken_broker() -> Iterator[BrokenBroker]:
    broker = BrokenBroker()
    with broker_switched(f"redis://127.0.0.1:{broker.port}/0"):
        yield broker
    broker.close()


def test_after_a_failed_enqueue_the_process_leaves_the_broker_alone_for_a_moment(broken_broker):
    """On a broker that hangs each attempt costs its timeouts (seconds), and a decision or a
    held check queues one after commit: one attempt a second, not one per request."""
    assert enqueue_now(deliver, "dlv_1") is False
    tried = broken_broker.count()
    assert tried >= 1
    assert [enqueue_now(deliver, f"dlv_{n}") for n in range(2, 6)] == [False] * 4
    assert broken_broker.count() == tried
