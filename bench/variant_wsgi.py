"""The project's WSGI application with some of its speed tricks taken out, for A/B runs.

    WARDEN_WITHOUT=optimistic_spend,redis_client_reuse gunicorn ... bench.variant_wsgi:application

Each name replaces one trick with the plain code it stands in for (bench/tricks_ab.py runs
them; docs/PERFORMANCE.md has the results):

- ``optimistic_spend``: a limited check always takes its budgets' locks in a transaction
  of its own (``transaction.atomic()``, lock, read, spend, commit) instead of reading
  without a lock and spending with one statement;
- ``redis_client_reuse``: Django's Redis cache client (a ``redis.Redis`` built per
  operation);
- ``prepared_limits``: the running totals' read and spend go through Django's own cursor
  (client-side binding: parsed and planned on every call) instead of
  ``wardenproject.db.prepared_cursor``;
- ``prepared_audit``: the check's audit INSERT (one row, or a group commit's batch) goes
  through Django's own cursor instead of ``prepared_cursor``;
- ``trace`` (not a trick: what issue 16's evaluation trace costs): checks record no trace;
- ``decision_turns`` (not a trick either): one organisation's decisions no longer take turns
  (``approvals/turns.py``), for bench/decision_burst.py's A/B;
- ``decision_turn_request``: an API decision takes its organisation's turn for the
  decision's transaction only (inside ``approval_decide``), as before 2026-12-07 evening,
  not for the whole request (``turns.decision_turn``).
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

WITHOUT = {name for name in os.environ.get("WARDEN_WITHOUT", "").split(",") if name}
KNOWN = {
    "trace",  # not a trick: the evaluation trace of issue 16, for its cost
    "balanced_worker",  # taken out by bench/tricks_ab.py with gunicorn's own gthread worker
    "optimistic_spend",
    "redis_client_reuse",
    "prepared_limits",
    "prepared_audit",
    "decision_turns",
    "decision_turn_request",
}
if WITHOUT - KNOWN:
    raise SystemExit(f"unknown tricks: {sorted(WITHOUT - KNOWN)}")

if "trace" in WITHOUT:
    from agents import checks

    checks.decision_trace = lambda *args, **kwargs: None  # the entry records no trace

if "optimistic_spend" in WITHOUT:
    from agents import limits

    limits._contended = lambda keys: True  # every budget as if contended: locked at once

if "redis_client_reuse" in WITHOUT:
    from django.core.cache.backends.redis import RedisCacheClient

    from wardenproject import cache

    cache._ReusedClient = RedisCacheClient  # what each cache instance builds its client from

if "prepared_limits" in WITHOUT:
    from agents import limits

    limits.prepared_cursor = lambda connection: connection.cursor()

if "prepared_audit" in WITHOUT:
    from wardenproject import db

    db.prepared_cursor = lambda connection: connection.cursor()

if "decision_turns" in WITHOUT:
    from approvals import turns

    turns.decision_turn_take = lambda **kwargs: None  # decisions run side by side again

if "decision_turn_request" in WITHOUT:
    from contextlib import nullcontext

    from approvals import turns

    turns.decision_turn = lambda **kwargs: nullcontext()  # approval_decide's own turn only
