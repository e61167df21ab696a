"""gunicorn settings for Warden (`gunicorn -c gunicorn.conf.py wardenproject.wsgi`).

gthread workers: threads wait on PostgreSQL and hold long-polls (up to 60 s) without
blocking a process. Size with WEB_CONCURRENCY (processes, default 4) and WEB_THREADS
(threads per process, default 8); every thread may hold a database connection. A worker
accepts new connections only while it has a free thread (wardenproject/gunicorn_worker.py),
so a worker whose threads are all held (long-polls wait up to 60 s) leaves new connections
to one that can serve them, and the agents' keep-alive connections spread over the processes.
"""

from __future__ import annotations

import gc
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "wardenproject.gunicorn_worker.BalancedThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("WEB_THREADS", "8"))
backlog = 2048
keepalive = 75
timeout = 90  # above the longest long-poll (60 s)
graceful_timeout = 30
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# gunicorn 25+ opens a control socket for `gunicornc`, by default at one shared path
# ($XDG_RUNTIME_DIR/gunicorn.ctl or $HOME/.gunicorn/gunicorn.ctl), where every server the
# user runs takes it from the one before. Warden needs none (signals and systemd manage the
# server): off, unless GUNICORN_CONTROL_SOCKET names a path of this server's own.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True


def when_ready(server: object) -> None:
    # Everything imported so far lives as long as the process: take it out of the cyclic
    # GC's generations so collections stop rescanning it (fewer, shorter pauses).
    gc.collect()
    gc.freeze()
