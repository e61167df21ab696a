"""gunicorn's gthread worker, accepting connections only while it has a thread free.

gunicorn's own gthread worker accepts every connection it can (up to 1,000) whether or not a
thread is free to serve it, and a keep-alive connection stays with the worker that accepted
it. Agents keep their connections open (the SDKs pool them), so whichever worker woke first
when they connected served them for good: under load the measured spread was 24/4/4/0 or
even 32/0/0/0 connections over four workers, that one worker's eight threads queueing
requests behind the GIL while the other processes idled (checks/s halved).

This worker stops accepting while every one of its threads is busy with a request and starts
again when one finishes, so new connections go to a worker that can serve them at once; if
none can, they wait in the listen backlog rather than in one worker's queue. Connections it
already holds (keep-alive included) are served as before, and a thread held by a long-poll
counts as busy, so long-polls no longer pile onto one process either.

Relies on the internals of gunicorn's ``ThreadWorker`` (``enqueue_req``,
``finish_request``, ``set_accept_enabled``, ``_accepting``) of the pinned gunicorn version;
tests/core/test_gunicorn_worker.py runs real workers against it.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy_threads = 0  # requests handed to the thread pool and not finished

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's run loop turns accepting back on whenever it is under its connection
        # limit; it stays off while every thread is busy.
        super().set_accept_enabled(enabled and self.busy_threads < self.cfg.threads)

    def enqueue_req(self, conn: Any) -> None:
        self.busy_threads += 1
        super().enqueue_req(conn)
        if self._accepting and self.busy_threads >= self.cfg.threads:
            super().set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        # Runs on the main thread (gunicorn defers it there), as does enqueue_req: the count
        # needs no lock. A keep-alive connection with the next request already read is
        # enqueued again inside, and counted again.
        self.busy_threads -= 1
        super().finish_request(conn, fs)
