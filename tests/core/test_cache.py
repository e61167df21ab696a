"""The cache backend (wardenproject/cache.py) against a private Redis that dies and returns."""

from __future__ import annotations

import redis

from tests.live import wait_until
from wardenproject.cache import FallbackRedisCache


def in_redis(url: str, cache: FallbackRedisCache, key: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.exists(cache.make_key(key)))
    finally:
        client.close()


def test_the_cache_stands_in_for_redis_while_it_is_down_and_goes_back_to_it(private_redis):
    cache = FallbackRedisCache(private_redis.url, {"KEY_PREFIX": "t"})
    cache.set("before", 1)
    assert in_redis(private_redis.url, cache, "before")

    private_redis.kill()
    assert cache.get("before") is None  # what Redis held is not seen while it is down
    cache.set("during", 2)
    assert cache.get("during") == 2
    assert [cache.count_in_window("hits", 60) for _ in range(3)] == [1, 2, 3]
    assert cache.add("claim", 1, 2) is True
    assert cache.add("claim", 1, 2) is False

    private_redis.start()  # empty: it persisted nothing
    wait_until(lambda: cache.get("during") is None, timeout=30, what="reads from Redis again")
    cache.set("after", 3)
    assert in_redis(private_redis.url, cache, "after")
    assert cache.count_in_window("hits", 60) == 1  # Redis's own count
    cache.clear()  # the process's memory too
    assert cache.local.get("during") is None
