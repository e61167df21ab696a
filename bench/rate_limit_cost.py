"""Wall and CPU time per rate-limit count (agents.runtime.rate_limit_hit) through the configured
cache: Redis up, and Redis down (the process's own count, wardenproject/cache.py).

    REDIS_URL=redis://127.0.0.1:6379/2 .venv/bin/python bench/rate_limit_cost.py [--calls 20000]

Needs only Redis (the organisation is an in-memory object; nothing touches a database).
"Down" points the cache at 127.0.0.1:1, where nothing listens.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def per_call(calls: int, hit, organization) -> tuple[float, float]:
    """(wall, process CPU) seconds per call."""
    for _ in range(200):  # warm: connections, the fallback's first failure
        hit(organization)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        hit(organization)
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("set REDIS_URL")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.base")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    from accounts.models import Organization, Plan
    from agents import runtime

    plan = Plan(slug="bench", name="Bench", api_requests_per_minute=10**9)
    organization = Organization(pk=987654321, name="Bench", plan=plan)

    up = per_call(args.calls, runtime.rate_limit_hit, organization)
    down_caches = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=down_caches):
        down = per_call(args.calls, runtime.rate_limit_hit, organization)
    print(f"cache backend: {settings.CACHES['default']['BACKEND']}")
    for name, (wall, cpu) in (("Redis up:  ", up), ("Redis down:", down)):
        print(f"{name} {wall * 1e6:.1f} µs wall, {cpu * 1e6:.1f} µs CPU per count", end="")
        print(f" ({args.calls} calls)")


if __name__ == "__main__":
    main()
