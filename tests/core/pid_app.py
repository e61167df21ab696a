"""A WSGI app for tests/core/test_processes.py: answers with its process id, after
sleeping the seconds given in the query string."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
