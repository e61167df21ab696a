"""The Django cache on Redis, with the process's own memory standing in while Redis is down.

Nothing Warden keeps in the cache is the truth: rate-limit windows, "key used recently"
marks, replays of Idempotency-Key answers (the database has them too), webhook wake-up
claims, allauth's login throttles. So a Redis that does not answer must not fail the
request: every operation that cannot reach Redis is served by a ``LocMemCache`` shared by
the process's threads, and the process leaves Redis alone for ``RETRY_SECONDS`` before it
tries again (so an unreachable host costs one connect timeout a second, not one per
request). What that changes while Redis is down: counts and claims are per process (a
plan's rate limit is counted by each web process on its own), and what was written to
Redis before the outage is not seen until it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
# Redis that does not answer: refused, reset, timed out, or still loading its data.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# Connection options unless CACHES sets them: a Redis that hangs costs a bounded wait, and a
# pooled connection that broke (Redis restarted) is retried once on a fresh one at once.
DEFAULT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 1,
    "socket_timeout": 1,
    "retry": Retry(NoBackoff(), 1),
}


class _Outage:
    """Whether this process currently treats one Redis location as down (shared by the
    per-thread cache instances Django creates)."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.down = False
        self._lock = threading.Lock()

    def failed(self, location: str, exc: BaseException) -> None:
        with self._lock:
            self.down_until = time.monotonic() + RETRY_SECONDS
            if self.down:
                return
            self.down = True
        logger.warning(
            "Redis cache at %s does not answer (%s); this process uses its own memory until "
            "it does",
            location,
            exc,
        )

    def answered(self, location: str) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
        logger.warning("Redis cache at %s answers again", location)


_outages: dict[str, _Outage] = {}
_outages_lock = threading.Lock()


def _outage_for(location: str) -> _Outage:
    with _outages_lock:
        return _outages.setdefault(location, _Outage())


class _LocalCache(LocMemCache):
    def count_in_window(self, key: str, timeout: int) -> int:
        try:
            return self.incr(key)
        except ValueError:
            return 1 if self.add(key, 1, timeout) else self.incr(key)


class _ReusedClient(RedisCacheClient):
    """Django's client builds a ``redis.Redis`` around its pool for every operation: 130 µs
    of CPU with redis-py 8, more than the round trip itself. A client is thread-safe (it
    borrows a connection from the pool per command), so build one per pool and keep it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(
                connection_pool=self._get_connection_pool(write)
            )
        return client


class FallbackRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = {**DEFAULT_OPTIONS, **params.get("OPTIONS", {})}
        super().__init__(server, {**params, "OPTIONS": options})
        self._class = _ReusedClient
        self._location = server if isinstance(server, str) else ",".join(server)
        self._outage = _outage_for(self._location)
        # One LocMemCache per location and process: instances of the same name share storage.
        self.local = _LocalCache(
            f"warden-redis-fallback:{self._location}",
            {
                "TIMEOUT": params.get("TIMEOUT", 300),
                "KEY_PREFIX": params.get("KEY_PREFIX", ""),
                "VERSION": params.get("VERSION", 1),
                "OPTIONS": {"MAX_ENTRIES": 10_000},
            },
        )

    def _redis_or_local(self, on_redis: Callable, on_local: Callable, *args: Any) -> Any:
        outage = self._outage
        if outage.down_until > time.monotonic():
            return on_local(*args)
        try:
            result = on_redis(*args)
        except REDIS_DOWN as exc:
            outage.failed(self._location, exc)
            return on_local(*args)
        if outage.down:
            outage.answered(self._location)
        return result

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None):
        return self._redis_or_local(super().add, self.local.add, key, value, timeout, version)

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._redis_or_local(super().get, self.local.get, key, default, version)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None):
        return self._redis_or_local(super().set, self.local.set, key, value, timeout, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None):
        return self._redis_or_local(super().touch, self.local.touch, key, timeout, version)

    def delete(self, key: Any, version: Any = None) -> Any:
        return self._redis_or_local(super().delete, self.local.delete, key, version)

    def get_many(self, keys: Any, version: Any = None) -> Any:
        return self._redis_or_local(super().get_many, self.local.get_many, keys, version)

    def has_key(self, key: Any, version: Any = None) -> Any:
        return self._redis_or_local(super().has_key, self.local.has_key, key, version)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        return self._redis_or_local(super().incr, self.local.incr, key, delta, version)

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None):
        return self._redis_or_local(super().set_many, self.local.set_many, data, timeout, version)

    def delete_many(self, keys: Any, version: Any = None) -> Any:
        return self._redis_or_local(super().delete_many, self.local.delete_many, keys, version)

    def clear(self) -> Any:
        self.local.clear()
        return self._redis_or_local(super().clear, self.local.clear)

    def count_in_window(self, key: str, timeout: int) -> int:
        """Add one to the counter ``key`` (created with ``timeout`` seconds to live) and
        return it: one round trip to Redis (INCR and EXPIRE in a pipeline), or this
        process's own count while Redis is down."""
        return self._redis_or_local(self._count_on_redis, self.local.count_in_window, key, timeout)

    def _count_on_redis(self, key: str, timeout: int) -> int:
        full_key = self.make_and_validate_key(key)
        pipe = self._cache.get_client(full_key, write=True).pipeline()
        pipe.incr(full_key)
        pipe.expire(full_key, timeout)
        return pipe.execute()[0]
