"""A small background worker for fire-and-forget reports (outcomes, token usage).

Reports never delay the guarded call's return. The queue is flushed at interpreter exit
with a short bound so a finishing script does not lose its last outcome.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("wardenpy")

EXIT_FLUSH_SECONDS = 2.0


class BackgroundWorker:
    def __init__(self, name: str = "wardenpy-reporter") -> None:
        self._name = name
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - a report must never crash the worker
                logger.warning("wardenpy: background report failed: %s", exc)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted report was sent. False if ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                done.wait(remaining)
        return True


worker = BackgroundWorker()


def flush(timeout: float = 5.0) -> bool:
    """Wait for pending background reports (outcomes, token usage) to be sent."""
    return worker.flush(timeout)


@atexit.register
def _flush_at_exit() -> None:
    if not worker.flush(EXIT_FLUSH_SECONDS):
        logger.warning("wardenpy: exiting with unsent outcome/usage reports")
