"""Waking long-poll waiters the moment an approval request leaves ``pending``.

Every status change calls ``wake_publish`` after its transaction commits. Waiters in the
same process are woken directly (a ``threading.Event`` per waiter). With Redis
(``settings.REDIS_URL``) the change is also published on a per-action channel; each process
runs ONE listener thread (pattern subscription, one Redis connection) that wakes its local
waiters, so a decision taken in one gunicorn process wakes a waiter in another at once.

Without Redis, waiters re-read the database every ``POLL_SECONDS`` (so several processes
still work, with that much delay). With Redis they re-read it every ``SAFETY_SECONDS`` as a
safety net against a lost message (listener reconnecting).

Lost-wakeup race: a waiter registers its event (and, with Redis, makes sure the listener is
subscribed) BEFORE it reads the status, so a change committed after the read always reaches
the event.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from urllib.parse import urlparse

from django.conf import settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.15
SAFETY_SECONDS = 2.0

_lock = threading.Lock()
_waiters: dict[str, set[threading.Event]] = defaultdict(set)


def channel_prefix() -> str:
    """Redis pub/sub ignores the database number, so the channel names carry it."""
    url = settings.REDIS_URL
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

_redis_client = None
_redis_client_pid: int | None = None


def _redis():
    global _redis_client, _redis_client_pid
    if _redis_client is None or _redis_client_pid != os.getpid():
        import redis

        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
        _redis_client_pid = os.getpid()
    return _redis_client


class _Listener:
    """One pattern subscription per process; dispatches messages to local waiters."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="approval-wakeup", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time

        import redis

        prefix = channel_prefix()
        while True:
            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
                pubsub = client.pubsub()
                pubsub.psubscribe(f"{prefix}*")
                for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        self.ready.set()
                    elif message["type"] == "pmessage":
                        channel = message["channel"]
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        wake_local(channel[len(prefix) :])
            except Exception:
                logger.warning("approval wake-up listener lost Redis; reconnecting")
            self.ready.clear()
            # Anything published while disconnected is missed: wake everyone to re-read.
            with _lock:
                everyone = [e for events in _waiters.values() for e in events]
            for event in everyone:
                event.set()
            time.sleep(0.5)


_listener: _Listener | None = None


def _ensure_listener(timeout: float = 1.0) -> bool:
    """Start this process's listener if needed; True once it is subscribed."""
    global _listener
    with _lock:
        if _listener is None or _listener.pid != os.getpid():
            _listener = _Listener()
        listener = _listener
    return listener.ready.wait(timeout)


# --- the two entry points ---------------------------------------------------------------------


def wake_publish(action_id: str, status: str) -> None:
    """Tell every waiter on ``action_id`` that it changed. Call after commit."""
    wake_local(action_id)
    if not redis_enabled():
        return
    try:
        _redis().publish(f"{channel_prefix()}{action_id}", status)
    except Exception:
        logger.warning("could not publish approval wake-up; waiters fall back to polling")


def wait_slice() -> float:
    """How long a registered waiter may sleep before re-reading the database."""
    if redis_enabled() and _ensure_listener():
        return SAFETY_SECONDS
    return POLL_SECONDS
