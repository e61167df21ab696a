"""The project's WSGI application with some of its speed tricks taken out, for A/B runs.

    WARDEN_WITHOUT=instance_new,json_answer gunicorn ... bench.variant_wsgi:application

Each name replaces one trick with the plain code it stands in for (bench/tricks_ab.py runs
them; docs/PERFORMANCE.md has the results):

- ``instance_new``: the check's audit row built by ``AuditEntry(...)`` (Model.__init__);
- ``json_answer``: the check answers built by Django's ``JsonResponse``;
- ``psycopg_cache``: psycopg's own limits on its cache of converted queries (50 parameters),
  so group-commit INSERTs of 3+ rows are converted again on every call;
- ``lean_params``: every INSERT value through ``get_db_prep_save``;
- ``server_binding``: the hot-path INSERTs through Django's cursor (client-side binding,
  never prepared);
- ``optimistic_spend``: a limited check always takes its budgets' locks in a transaction
  of its own (``transaction.atomic()``, lock, read, spend, commit) instead of reading
  without a lock and spending with one statement in the group commit;
- ``group_spend``: a limited check's spend statement committed on its own instead of in
  the group commit with concurrent checks' rows;
- ``redis_client_reuse``: Django's Redis cache client (a ``redis.Redis`` built per
  operation).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

WITHOUT = {name for name in os.environ.get("WARDEN_WITHOUT", "").split(",") if name}
KNOWN = {
    "balanced_worker",  # taken out by bench/tricks_ab.py with gunicorn's own gthread worker
    "instance_new",
    "json_answer",
    "psycopg_cache",
    "lean_params",
    "server_binding",
    "optimistic_spend",
    "group_spend",
    "redis_client_reuse",
}
if WITHOUT - KNOWN:
    raise SystemExit(f"unknown tricks: {sorted(WITHOUT - KNOWN)}")

if "instance_new" in WITHOUT:
    from agents import checks

    checks.instance_new = lambda model, **values: model(**values)

if "json_answer" in WITHOUT:
    from django.http import JsonResponse

    from agents import api, compat

    def _json_response(body: dict[str, Any], status: int = 200) -> Any:
        return JsonResponse(body, status=status)

    api.json_answer = compat.json_answer = _json_response

if "psycopg_cache" in WITHOUT:
    from wardenproject import db

    db._statement_cache_widened = True  # never widened: psycopg's own limits stay

if "lean_params" in WITHOUT:
    from wardenproject import db

    db._plain_value_types = lambda field: None
    db._STATEMENTS.clear()

if "server_binding" in WITHOUT:
    from wardenproject import db

    db.server_cursor = lambda connection: connection.cursor()

if "optimistic_spend" in WITHOUT:
    from agents import limits

    limits._contended = lambda keys: True  # every budget as if contended: locked at once

if "group_spend" in WITHOUT:
    from django.db import connections

    from audit.writer import GroupCommit
    from wardenproject.db import rows_inserted, server_cursor

    def _spend_alone(self: GroupCommit, entry: Any, sql: str, params: list[Any]) -> bool:
        with server_cursor(connections["default"]) as cursor:
            cursor.execute(sql, params)
            keys = cursor.fetchall()
        if keys:
            rows_inserted([entry], keys, using="default")
        return bool(keys)

    GroupCommit.spend = _spend_alone

if "redis_client_reuse" in WITHOUT:
    from django.core.cache.backends.redis import RedisCacheClient

    from wardenproject import cache

    cache._ReusedClient = RedisCacheClient  # what each cache instance builds its client from
