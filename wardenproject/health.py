"""Liveness and readiness probes."""

from __future__ import annotations

import os
from http import HTTPStatus

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()[:300]
    return None


def _check_broker() -> str | None:
    if settings.REDIS_URL:
        import redis

        try:
            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
            )
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}".strip()[:300]
        return None
    folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        return f"broker folder {folder} is missing or not writable"
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness, with a JSON body naming what is down.

    503 when the process cannot serve: the database is down, or the embedded broker's folder
    is missing. A Redis that does not answer is reported ("degraded", the broker named) but
    leaves the process ready: checks, decisions and status reads do without it (the cache
    falls back to the process's memory, long-polls to reading the database, lost task
    wake-ups to the sweepers), and a probe that failed on it would take every web process
    out of its load balancer at once.
    """
    checks = {"database": _check_database(), "broker": _check_broker()}
    required = {"database"} if settings.REDIS_URL else {"database", "broker"}
    down = {name for name, err in checks.items() if err is not None}
    if down & required:
        status, http_status = "unavailable", HTTPStatus.SERVICE_UNAVAILABLE
    elif down:
        status, http_status = "degraded", HTTPStatus.OK
    else:
        status, http_status = "ok", HTTPStatus.OK
    body = {
        "status": status,
        "checks": {name: ("ok" if err is None else "down") for name, err in checks.items()},
        "errors": {name: err for name, err in checks.items() if err is not None},
    }
    return JsonResponse(body, status=http_status)
