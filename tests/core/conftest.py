"""Start and leave every test without the per-process key and policy caches or the cache's
rate-limit counters: the hostile-input tables and the fuzz tests send thousands of keyed
requests, whose counters would otherwise rate-limit later tests of an organisation with the
same id (SQLite reuses ids after a rollback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from agents import runtime


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    runtime.caches_clear()
    cache.clear()
    yield
    runtime.caches_clear()
    cache.clear()
