"""Shared fixtures for tests that run real processes: a Celery worker, the web server, a
webhook receiver, and a private Redis server.

Loaded from tests/conftest.py (``pytest_plugins = ["tests.live"]``).

``celery_worker`` starts ``celery -A wardenproject worker --pool threads -B`` in its own
process group (``celery_mail_worker`` a second one, for the mail queue only), pointed at the
test database (PostgreSQL only: an SQLite test database lives in the test process's memory)
and at the test process's broker. Tests using it need
``transactional_db`` (the worker must see committed rows) and the ``postgres`` and ``live``
markers (plus ``redis`` if they need Redis). Override the fixtures ``celery_worker_settings``
(a settings module), ``celery_worker_env`` (extra environment) and ``celery_worker_queues``
(``-Q``) in a test module or a conftest to tune the worker.

``webhook_receiver`` is a real HTTP server on 127.0.0.1 that records every request and can
be told, per path, to fail N times, answer a status with headers, or sleep.

``live_web`` starts the real web server (gunicorn with gunicorn.conf.py) the same way as the
worker (``live_web_env`` adds to its environment).
``silent_smtp`` is a mail server that accepts connections and never answers.

``private_redis`` starts a redis-server of its own on a free port, so a test can kill and
restart it without touching the Redis other tests share. ``redis_down`` points this
process's cache, wake-ups and Celery producer at a Redis that refuses every connection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    condition: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Webhook receiver -------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'
    sleep: float = 0.0


class WebhookReceiver:
    """Records requests; answers per path from a script of answers, then a default."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, list[Answer]] = {}
        self._defaults: dict[str, Answer] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver._record(self, body)
                if answer.sleep:
                    time.sleep(answer.sleep)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> Answer:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(
                ReceivedRequest(
                    handler.command, handler.path, dict(handler.headers.items()), body, time.time()
                )
            )
            script = self._scripts.get(path)
            if script:
                return script.pop(0)
            return self._defaults.get(path, Answer())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def fail_times(self, count: int, path: str = "/hook", status: int = 500) -> None:
        with self._lock:
            self._scripts.setdefault(path, []).extend(Answer(status=status) for _ in range(count))

    def then(self, answer: Answer, path: str = "/hook") -> None:
        """Queue one scripted answer for ``path``."""
        with self._lock:
            self._scripts.setdefault(path, []).append(answer)

    def always(self, answer: Answer, path: str = "/hook") -> None:
        with self._lock:
            self._defaults[path] = answer

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path.startswith(path)]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 30) -> list:
        wait_until(
            lambda: len(self.received(path)) >= count,
            timeout=timeout,
            what=f"{count} request(s) on {path or 'any path'}",
        )
        return self.received(path)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


# --- Private Redis ----------------------------------------------------------------------------


class PrivateRedis:
    def __init__(self, port: int, workdir: str) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10, what="private redis-server to start")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server loses everything it held (it persists nothing)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH")
    with tempfile.TemporaryDirectory() as workdir:
        redis = PrivateRedis(free_port(), workdir)
        redis.start()
        yield redis
        redis.kill()


@contextlib.contextmanager
def broker_switched(url: str) -> Iterator[None]:
    """Point the test process's Celery producer at ``url`` (e.g. a private Redis), with the
    transport and options production uses for a Redis broker."""
    from wardenproject.celery import app

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: the Redis broker's transport and options")

    def reset() -> None:
        app._pool = None
        with contextlib.suppress(AttributeError, KeyError):
            app.__dict__["amqp"]._producer_pool = None

    saved = (app.conf.broker_url, app.conf.broker_transport, app.conf.broker_transport_options)
    app.conf.broker_url = url
    app.conf.broker_transport = getattr(settings, "CELERY_BROKER_TRANSPORT", None)
    app.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    reset()
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport, app.conf.broker_transport_options = saved
        reset()


class ClosingServer:
    """A TCP server on 127.0.0.1 that accepts every connection and closes it at once (a Redis
    that is there but answers nothing), counting the connections it was asked for."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            conn.close()

    def count(self) -> int:
        with self._lock:
            return self.connections

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def closing_server() -> Iterator[ClosingServer]:
    server = ClosingServer()
    yield server
    server.close()


# Nothing listens on port 1 of the loopback: a connection there is refused at once.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_down(settings) -> Iterator[None]:
    """This process's Redis (cache, long-poll wake-ups, webhook wake-up claims, Celery
    producer) replaced by one that refuses every connection, configured as in production."""
    redis_caches = {
        alias: {**conf, "LOCATION": DEAD_REDIS_URL}
        for alias, conf in settings.CACHES.items()
        if "redis" in conf["BACKEND"].lower()
    }
    assert redis_caches, "needs REDIS_URL: the cache is not Redis"
    settings.REDIS_URL = DEAD_REDIS_URL
    settings.CACHES = {**settings.CACHES, **redis_caches}
    with broker_switched(DEAD_REDIS_URL):
        try:
            yield
        finally:
            from django.core.cache import caches

            for alias in redis_caches:
                caches[alias].clear()  # what the outage left in this process's own cache


# --- Celery worker ----------------------------------------------------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("a worker process needs PostgreSQL (the SQLite test DB is in memory)")
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class CeleryWorker:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        queues: str | None = None,
        beat: bool = True,
        concurrency: str | None = None,
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.queues = queues  # None: every declared queue, as a worker started without -Q
        self.beat = beat
        self.concurrency = concurrency or env.get("WORKER_CONCURRENCY", "4")
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        offset = self.log_path.stat().st_size
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "wardenproject",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            self.concurrency,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]
        if self.queues:
            command += ["-Q", self.queues]
        if self.beat:
            command += ["-B", "-s", str(self.log_path.with_suffix(".beat"))]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"celery worker exited early:\n{self.log()[-4000:]}")
            return b" ready." in self.log_path.read_bytes()[offset:]

        wait_until(ready, timeout=60, interval=0.2, what="celery worker to be ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _signal_group(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the worker and its embedded beat: no clean-up, no acknowledgements."""
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        self._signal_group(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.kill()
        if self._log:
            self._log.close()
        self.start()


@pytest.fixture
def celery_worker_settings() -> str:
    return "wardenproject.settings.test"


@pytest.fixture
def celery_worker_env() -> dict[str, str]:
    return {}


@pytest.fixture
def celery_worker_queues() -> str | None:
    """The queues ``celery_worker`` consumes (``-Q``); None: every declared queue."""
    return None


def _worker_env(settings_module: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": _database_url(),
        "PYTHONUNBUFFERED": "1",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(extra)
    return env


@pytest.fixture
def celery_worker(
    transactional_db,
    celery_worker_settings,
    celery_worker_env,
    celery_worker_queues,
    tmp_path,
) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(
        _worker_env(celery_worker_settings, celery_worker_env),
        tmp_path / "celery-worker.log",
        queues=celery_worker_queues,
    )
    worker.start()
    yield worker
    worker.stop()


# --- Web server -------------------------------------------------------------------------------


class LiveWeb:
    """The real web server: gunicorn with the project's gunicorn.conf.py and WSGI app, in a
    process group of its own, pointed at the test database (PostgreSQL only)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "wardenproject.wsgi",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited early:\n{self.log()[-4000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    return sock.recv(16).startswith(b"HTTP/1.1 200")
            except OSError:
                return False

        wait_until(ready, timeout=60, interval=0.2, what="gunicorn to answer /healthz")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self._log:
            self._log.close()
            self._log = None


@pytest.fixture
def live_web_env() -> dict[str, str]:
    return {}


@pytest.fixture
def live_web(transactional_db, live_web_env, tmp_path) -> Iterator[LiveWeb]:
    """gunicorn serving Warden on a free port (1 process, 8 threads unless ``live_web_env``
    says otherwise), with the test run's settings, database and Redis."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.test",
        "DATABASE_URL": _database_url(),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "8",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(live_web_env)
    web = LiveWeb(env, tmp_path / "gunicorn.log")
    web.start()
    yield web
    web.stop()


@pytest.fixture
def celery_mail_worker(
    transactional_db, celery_worker_settings, celery_worker_env, tmp_path
) -> Iterator[CeleryWorker]:
    """A second worker that consumes only the mail queue, with 4 threads and no beat, the
    way ``make run`` starts its mail worker."""
    worker = CeleryWorker(
        _worker_env(celery_worker_settings, celery_worker_env),
        tmp_path / "celery-mail-worker.log",
        queues="mail",
        beat=False,
        concurrency="4",
    )
    worker.start()
    yield worker
    worker.stop()


# --- A mail server that never answers ---------------------------------------------------------


class SilentSmtp:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte: an SMTP client waits for
    the greeting until its own timeout. Closing it ends every connection it holds."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections.append(sock)

    def connected(self) -> int:
        with self._lock:
            return len(self.connections)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self.connections:
                sock.close()


@pytest.fixture
def silent_smtp() -> Iterator[SilentSmtp]:
    server = SilentSmtp()
    yield server
    server.close()
