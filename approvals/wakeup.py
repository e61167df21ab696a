"""Waking long-poll waiters the moment an approval request leaves ``pending``.

Every status change calls ``wake_publish`` after its transaction commits. Waiters in the
same process are woken directly (a ``threading.Event`` per waiter). With Redis
(``settings.REDIS_URL``) the change is also published on a per-action channel; each process
runs ONE listener thread (pattern subscription, one Redis connection) that wakes its local
waiters, so a decision taken in one gunicorn process wakes a waiter in another at once.

Without Redis, waiters re-read the database every ``POLL_SECONDS`` (so several processes
still work, with that much delay). With Redis they re-read it every ``SAFETY_SECONDS`` as a
safety net against a lost message; while the listener has lost Redis (an outage), every
``POLL_SECONDS`` again, as without Redis.

Lost-wakeup race: a waiter registers its event (and, with Redis, makes sure the listener is
subscribed) BEFORE it reads the status, so a change committed after the read always reaches
the event.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from urllib.parse import urlparse

from django.conf import settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.15
SAFETY_SECONDS = 2.0

_lock = threading.Lock()
_waiters: dict[str, set[threading.Event]] = defaultdict(set)


def channel_prefix(url: str | None = None) -> str:
    """Redis pub/sub ignores the database number, so the channel names carry it."""
    url = settings.REDIS_URL if url is None else url
    db = (urlparse(url).path or "/0").strip("/") or "0"
    return f"warden:{db}:approval:"


def redis_enabled() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


# --- local registry ---------------------------------------------------------------------------


def register(action_id: str) -> threading.Event:
    event = threading.Event()
    with _lock:
        _waiters[action_id].add(event)
    return event


def unregister(action_id: str, event: threading.Event) -> None:
    with _lock:
        events = _waiters.get(action_id)
        if events is not None:
            events.discard(event)
            if not events:
                del _waiters[action_id]


def wake_local(action_id: str) -> int:
    with _lock:
        events = list(_waiters.get(action_id, ()))
    for event in events:
        event.set()
    return len(events)


# --- Redis ------------------------------------------------------------------------------------

# The publishing client and the listener belong to one process and one REDIS_URL (which
# only tests change at run time).
_redis_client = None
_redis_client_for: tuple[int, str] | None = None


def _redis():
    global _redis_client, _redis_client_for
    owner = (os.getpid(), settings.REDIS_URL)
    if _redis_client is None or _redis_client_for != owner:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One retry at once (a connection that broke when Redis restarted), not redis-py's
        # three with backoff.
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=2,
            socket_timeout=2,
            retry=Retry(NoBackoff(), 1),
        )
        _redis_client_for = owner
    return _redis_client


class _Listener:
    """One pattern subscription per process; dispatches messages to local waiters."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.pid = os.getpid()
        self.url = settings.REDIS_URL
        self.thread = threading.Thread(target=self._run, name="approval-wakeup", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import redis

        prefix = channel_prefix(self.url)
        lost = False
        while not self.stopped.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
                pubsub = client.pubsub()
                pubsub.psubscribe(f"{prefix}*")
                for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        self.ready.set()
                        if lost:
                            lost = False
                            logger.warning("approval wake-up listener is back on Redis")
                    elif message["type"] == "pmessage":
                        channel = message["channel"]
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        wake_local(channel[len(prefix) :])
            except Exception:
                if not lost:  # once per outage, not at every reconnection attempt
                    lost = True
                    logger.warning(
                        "approval wake-up listener lost Redis; long-polls read the database "
                        "every %.2f s until it is back",
                        POLL_SECONDS,
                    )
            self.ready.clear()
            # Anything published while disconnected is missed: wake everyone to re-read.
            with _lock:
                everyone = [e for events in _waiters.values() for e in events]
            for event in everyone:
                event.set()
            time.sleep(0.5)


_listener: _Listener | None = None


def _ensure_listener(timeout: float = 1.0) -> bool:
    """Start this process's listener if needed; True while it is subscribed. Only the
    caller that starts it waits (up to ``timeout``) for its first subscription: a listener
    that lost Redis answers False at once, so waiters poll the database meanwhile."""
    global _listener
    with _lock:
        started = (
            _listener is None or _listener.pid != os.getpid() or _listener.url != settings.REDIS_URL
        )
        if started:
            if _listener is not None:
                _listener.stopped.set()  # it leaves at its next reconnection
            _listener = _Listener()
        listener = _listener
    if started:
        return listener.ready.wait(timeout)
    return listener.ready.is_set()


# --- the two entry points ---------------------------------------------------------------------


# After a publish failed, the process publishes nothing for this long: on a Redis that
# hangs each attempt costs its timeouts, after every decision. Waiters elsewhere re-read
# the database meanwhile (their listeners have lost Redis too) or within SAFETY_SECONDS.
PUBLISH_RETRY_SECONDS = 1.0
_publish_down_until: dict[str, float] = {}  # by REDIS_URL


def wake_publish(action_id: str, status: str) -> None:
    """Tell every waiter on ``action_id`` that it changed. Call after commit."""
    wake_local(action_id)
    url = settings.REDIS_URL
    if not redis_enabled() or _publish_down_until.get(url, 0.0) > time.monotonic():
        return
    try:
        _redis().publish(f"{channel_prefix()}{action_id}", status)
    except Exception as exc:
        _publish_down_until[url] = time.monotonic() + PUBLISH_RETRY_SECONDS
        logger.warning("could not publish approval wake-up (%s); waiters fall back to polling", exc)


def wait_slice() -> float:
    """How long a registered waiter may sleep before re-reading the database. Ask again
    before every read: the answer changes when the listener loses or regains Redis."""
    if redis_enabled() and _ensure_listener():
        return SAFETY_SECONDS
    return POLL_SECONDS
