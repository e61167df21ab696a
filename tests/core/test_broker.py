"""The Redis broker transport (wardenproject/broker.py) when its private Redis dies."""

from __future__ import annotations

import contextlib
import socket

from kombu import Connection
from kombu.common import ignore_errors

from tests.core.test_settings import printed_by_settings

WARDEN_TRANSPORT = "wardenproject.broker:Transport"


def test_redis_settings_select_the_guarded_transport():
    assert (
        printed_by_settings("s.CELERY_BROKER_TRANSPORT", {"REDIS_URL": "redis://127.0.0.1:6379/3"})
        == WARDEN_TRANSPORT
    )


def test_a_worker_connection_closed_after_redis_died_raises_only_connection_errors(
    private_redis,
):
    """What a Celery worker's consumer does when the broker goes away mid-task: collect the
    broken connection, then close it, forgiving only connection errors. With kombu's own
    transport the close raised AttributeError ('NoneType' object has no attribute
    'hostname') and the worker exited."""
    conn = Connection(private_redis.url, transport=WARDEN_TRANSPORT)
    first = conn.SimpleQueue("first")  # on the default channel, as Celery's task consumer
    second = conn.SimpleQueue("second", channel=conn.channel())
    first.put({"n": 1})
    second.put({"n": 2})
    unacked = [first.get(timeout=5), second.get(timeout=5)]  # acks_late: still running
    with contextlib.suppress(socket.timeout):
        conn.drain_events(timeout=0.2)  # leaves a BRPOP in flight, as the worker's loop does
    assert unacked and first.channel._in_poll

    private_redis.kill()
    try:
        with contextlib.suppress(Exception):  # Celery ignores whatever collect() raises
            conn.collect(socket_timeout=2)
        ignore_errors(conn, conn.close)  # Celery: connection errors are forgiven, nothing else
    finally:
        # kombu also tries to restore unacknowledged messages at interpreter exit; there is
        # no Redis to restore them to, so spare the test run's output that traceback.
        for queue in (first, second):
            if queue.channel._qos is not None:
                queue.channel._qos._on_collect.cancel()
