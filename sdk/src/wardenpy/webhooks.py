"""Webhook verification, parsing and dispatch for the three Warden formats.

* ``standard`` (Standard Webhooks): ``webhook-id`` / ``webhook-timestamp`` /
  ``webhook-signature: v1,<base64>`` (several, space separated), key = base64 after ``whsec_``.
* ``arden``: ``X-Arden-Timestamp`` / ``X-Arden-Signature: sha256=<hex>`` / ``X-Arden-Event-Id``.
* ``agentwarden``: ``X-AgentWarden-Timestamp`` / ``X-AgentWarden-Signature`` /
  ``X-AgentWarden-Event-Id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from .client import Client, _error_text, get_client
from .exceptions import AlreadyClaimedError, ConfigurationError, ConflictError, WardenError
from .types import WebhookEvent

logger = logging.getLogger("wardenpy")

Callback = Callable[[WebhookEvent], Any]

DEFAULT_TOLERANCE = 300

# native event name -> Arden-style event_type
_NATIVE_TO_EVENT_TYPE = {
    "approval.approved": "action_approved",
    "approval.rejected": "action_denied",
    "approval.expired": "action_denied",
    "approval.cancelled": "action_denied",
    "log.pending_approval": "action_pending",
    "webhook.test": "webhook_test",
}


# ---------------------------------------------------------------------------
# signatures
# ---------------------------------------------------------------------------
def _as_bytes(body: bytes | bytearray | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _standard_key(signing_key: str) -> bytes:
    secret = signing_key[len("whsec_") :] if signing_key.startswith("whsec_") else signing_key
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signing key is not a valid whsec_<base64> secret") from exc


def sign_standard(msg_id: str, timestamp: str | int, body: bytes | str, signing_key: str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for a Standard Webhooks delivery."""
    message = f"{msg_id}.{timestamp}.".encode() + _as_bytes(body)
    digest = hmac.new(_standard_key(signing_key), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_hex(timestamp: str | int, body: bytes | str, signing_key: str) -> str:
    """The ``sha256=<hex>`` signature used by the arden and agentwarden formats."""
    message = f"{timestamp}.".encode() + _as_bytes(body)
    return "sha256=" + hmac.new(signing_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_webhook_signature(
    body: bytes | str,
    timestamp: str | int,
    signature: str,
    signing_key: str,
    *,
    msg_id: str | None = None,
) -> bool:
    """True when ``signature`` matches. Timing-safe; needs no :func:`configure`.

    Accepts the arden/agentwarden form ``sha256=<hex>`` and the Standard Webhooks form
    ``v1,<base64>`` (space-separated list allowed; pass ``msg_id=`` the ``webhook-id``).
    Never raises for malformed input: it returns False.
    """
    if not signature or not signing_key:
        return False
    try:
        candidates = signature.split()
        if any(c.startswith("v1,") for c in candidates):
            if not msg_id:
                return False
            expected = sign_standard(msg_id, timestamp, body, signing_key)
            return any(
                hmac.compare_digest(expected.encode(), c.encode())
                for c in candidates
                if c.startswith("v1,")
            )
        expected = sign_hex(timestamp, body, signing_key)
        given = signature.strip()
        if not given.startswith("sha256="):
            given = "sha256=" + given
        return hmac.compare_digest(expected.encode(), given.encode())
    except (ValueError, UnicodeError):
        return False


# ---------------------------------------------------------------------------
# replay protection
# ---------------------------------------------------------------------------
class SeenStore(Protocol):
    def add(self, event_id: str) -> bool:
        """Record ``event_id``; False when it was already recorded (a replay)."""

    def discard(self, event_id: str) -> None:
        """Forget ``event_id`` (its handler failed, so a redelivery must run)."""


class InMemorySeenStore:
    """Remembers the last ``max_size`` event ids for ``ttl`` seconds."""

    def __init__(self, max_size: int = 10_000, ttl: float = 24 * 3600) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_size
        self._ttl = ttl
        self._lock = threading.Lock()

    def add(self, event_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at <= self._ttl and len(self._seen) < self._max:
                    break
                self._seen.pop(oldest)
            if event_id in self._seen:
                return False
            self._seen[event_id] = now
            return True

    def discard(self, event_id: str) -> None:
        with self._lock:
            self._seen.pop(event_id, None)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


class SqliteSeenStore:
    """Persistent seen-id store (survives restarts; shareable by processes on one host)."""

    def __init__(self, path: str, ttl: float = 7 * 24 * 3600) -> None:
        self._path = path
        self._ttl = ttl
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at REAL NOT NULL)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=10)
        try:
            with db:  # commits or rolls back
                yield db
        finally:
            db.close()

    def add(self, event_id: str) -> bool:
        now = time.time()
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM seen WHERE at < ?", (now - self._ttl,))
            cursor = db.execute(
                "INSERT OR IGNORE INTO seen (id, at) VALUES (?, ?)", (event_id, now)
            )
            return cursor.rowcount == 1

    def discard(self, event_id: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM seen WHERE id = ?", (event_id,))


_default_seen_store: SeenStore = InMemorySeenStore()


def set_seen_store(store: SeenStore) -> None:
    """Replace the store ``handle_webhook`` uses for replay protection (e.g. SqliteSeenStore)."""
    global _default_seen_store
    _default_seen_store = store


def get_seen_store() -> SeenStore:
    return _default_seen_store


# ---------------------------------------------------------------------------
# handler registry
# ---------------------------------------------------------------------------
@dataclass
class Handlers:
    on_approval: Callback | None = None
    on_denial: Callback | None = None
    on_pending: Callback | None = None
    # Claims an approved action and reports its outcome; None: the process-wide client.
    client: Client | None = None


class HandlerRegistry:
    """Callbacks by action id (registered by guard_tool in this process) and by tool name.

    Tool-name handlers are registered at import time by the application, so a process that
    restarted between the call and the decision still acts on the decision. Each action id
    is dispatched at most once per registry, whichever path (poller or webhook) gets there
    first.
    """

    def __init__(self, remember: int = 10_000) -> None:
        self._by_action: dict[str, tuple[str, Handlers]] = {}
        self._by_tool: dict[str, Handlers] = {}
        self._dispatched: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def register_tool(
        self,
        tool_name: str,
        on_approval: Callback | None = None,
        on_denial: Callback | None = None,
        on_pending: Callback | None = None,
        client: Client | None = None,
    ) -> None:
        with self._lock:
            self._by_tool[tool_name] = Handlers(on_approval, on_denial, on_pending, client)

    def register_action(
        self,
        action_id: str,
        tool_name: str,
        on_approval: Callback,
        on_denial: Callback,
        client: Client | None = None,
    ) -> None:
        with self._lock:
            self._by_action[action_id] = (
                tool_name,
                Handlers(on_approval, on_denial, client=client),
            )

    def unregister_tool(self, tool_name: str) -> None:
        with self._lock:
            self._by_tool.pop(tool_name, None)

    def clear(self) -> None:
        with self._lock:
            self._by_action.clear()
            self._by_tool.clear()
            self._dispatched.clear()

    def take(self, event: WebhookEvent) -> Callback | None:
        """The callback for ``event`` (None if none), marking a decision as dispatched."""
        taken = self.take_with_client(event)
        return taken[0] if taken else None

    def take_with_client(self, event: WebhookEvent) -> tuple[Callback, Client | None] | None:
        """:meth:`take`, with the client registered alongside the callback (None if none)."""
        with self._lock:
            if event.event_type == "action_pending":
                handlers = self._by_tool.get(event.tool_name)
                if handlers is None or handlers.on_pending is None:
                    return None
                return handlers.on_pending, handlers.client
            if event.event_type not in ("action_approved", "action_denied"):
                return None
            if event.action_id in self._dispatched:
                return None
            entry = self._by_action.pop(event.action_id, None)
            handlers = entry[1] if entry else self._by_tool.get(event.tool_name)
            if handlers is None:
                return None
            callback = handlers.on_approval if event.approved else handlers.on_denial
            if callback is None:
                return None
            self._dispatched[event.action_id] = None
            while len(self._dispatched) > self._remember:
                self._dispatched.popitem(last=False)
            return callback, handlers.client

    def release(self, action_id: str) -> None:
        """Allow ``action_id`` to be dispatched again (its callback raised)."""
        with self._lock:
            self._dispatched.pop(action_id, None)


registry = HandlerRegistry()


def register_handler(
    tool_name: str,
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
    *,
    on_pending: Callback | None = None,
    client: Client | None = None,
) -> None:
    """Call ``on_approval`` / ``on_denial`` for decisions on ``tool_name`` delivered to
    :func:`handle_webhook`, even for calls made by an earlier process. Register it at import
    time of your web app. ``client`` claims approved actions and reports their outcomes
    (default: the process-wide client from :func:`wardenpy.configure`)."""
    registry.register_tool(tool_name, on_approval, on_denial, on_pending, client)


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------
def _lower(headers: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def detect_format(headers: Mapping[str, str], payload: Mapping[str, Any] | None = None) -> str:
    """``standard``, ``arden`` or ``agentwarden`` from the headers (lower-cased), else body."""
    if "webhook-signature" in headers or "webhook-id" in headers:
        return "standard"
    if "x-arden-signature" in headers or "x-arden-timestamp" in headers:
        return "arden"
    if "x-agentwarden-signature" in headers or "x-agentwarden-timestamp" in headers:
        return "agentwarden"
    if payload is not None:
        if "event_type" in payload and "action" in payload:
            return "arden"
        if "event" in payload and "data" in payload:
            return "agentwarden"
        if "type" in payload and "data" in payload:
            return "standard"
    raise ValueError("unrecognised webhook: no Warden, Arden or AgentWarden headers")


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def parse_event(payload: Mapping[str, Any], fmt: str, event_id: str | None = None) -> WebhookEvent:
    """Build a :class:`WebhookEvent` from a decoded body of format ``fmt``."""
    raw = dict(payload)
    if fmt == "standard":
        data = _dict(payload.get("data"))
        native = str(payload.get("type") or "")
        return WebhookEvent(
            event_type=_NATIVE_TO_EVENT_TYPE.get(native, native),
            action_id=str(data.get("action_id") or ""),
            tool_name=str(data.get("action") or ""),
            context=_dict(data.get("arguments")),
            approved_by=data.get("decided_by"),
            notes=data.get("notes"),
            raw=raw,
            warden_type=native,
            event_id=event_id or payload.get("id"),
            status=data.get("status"),
        )
    if fmt == "arden":
        action = _dict(payload.get("action"))
        approval = _dict(payload.get("approval"))
        event_type = str(payload.get("event_type") or "")
        notes = approval.get("notes")
        if event_type == "action_approved":
            native = "approval.approved"
        elif event_type == "action_denied":
            expired = isinstance(notes, str) and "expired" in notes.lower()
            native = "approval.expired" if expired else "approval.rejected"
        elif "pending" in event_type:
            native, event_type = "log.pending_approval", "action_pending"
        else:
            native = event_type
        return WebhookEvent(
            event_type=event_type,
            action_id=str(action.get("action_id") or ""),
            tool_name=str(action.get("tool_name") or ""),
            context=_dict(action.get("context")),
            approved_by=approval.get("admin_user_id"),
            notes=notes,
            raw=raw,
            warden_type=native,
            event_id=event_id or payload.get("event_id"),
            status=action.get("status"),
        )
    if fmt == "agentwarden":
        data = _dict(payload.get("data"))
        native = str(payload.get("event") or "")
        action_id = data.get("approval_id") or data.get("action_id") or data.get("id") or ""
        return WebhookEvent(
            event_type=_NATIVE_TO_EVENT_TYPE.get(native, native),
            action_id=str(action_id),
            tool_name=str(data.get("action") or ""),
            context=_dict(data.get("context")),
            approved_by=data.get("resolved_by") or data.get("decided_by"),
            notes=data.get("notes") or data.get("reason"),
            raw=raw,
            warden_type=native,
            event_id=event_id or payload.get("id"),
            status=data.get("status"),
        )
    raise ValueError(f"unknown webhook format {fmt!r}")


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------
_HEADER_NAMES = {
    "standard": ("webhook-id", "webhook-timestamp", "webhook-signature"),
    "arden": ("x-arden-event-id", "x-arden-timestamp", "x-arden-signature"),
    "agentwarden": (
        "x-agentwarden-event-id",
        "x-agentwarden-timestamp",
        "x-agentwarden-signature",
    ),
}


def _check_timestamp(timestamp: str, tolerance: float) -> None:
    try:
        sent = int(float(timestamp))
    except ValueError as exc:
        raise ValueError(f"webhook timestamp {timestamp!r} is not a unix time") from exc
    if abs(time.time() - sent) > tolerance:
        raise ValueError(f"webhook timestamp is outside the {tolerance:g}s tolerance (stale)")


def verify_and_parse(
    body: bytes | str,
    headers: Mapping[str, Any] | None,
    signing_key: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> WebhookEvent:
    """Verify the signature and timestamp (when ``signing_key`` is given) and parse."""
    raw_body = _as_bytes(body)
    lowered = _lower(headers)
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError) as exc:
        if signing_key is not None:
            # Do not tell the caller more than "bad signature" before verifying.
            payload = None
        else:
            raise WardenError(f"invalid webhook payload: {exc}") from exc
    fmt = detect_format(lowered, payload if isinstance(payload, Mapping) else None)
    id_header, ts_header, sig_header = _HEADER_NAMES[fmt]
    event_id = lowered.get(id_header) or None

    if signing_key is not None:
        timestamp = lowered.get(ts_header, "")
        signature = lowered.get(sig_header, "")
        if not timestamp or not signature:
            raise ValueError(f"missing {ts_header} or {sig_header} header")
        if fmt == "standard" and not event_id:
            raise ValueError("missing webhook-id header")
        if not verify_webhook_signature(
            raw_body, timestamp, signature, signing_key, msg_id=event_id
        ):
            raise ValueError("webhook signature verification failed")
        _check_timestamp(timestamp, tolerance)

    if not isinstance(payload, Mapping):
        raise WardenError("invalid webhook payload: not a JSON object")
    event = parse_event(payload, fmt, event_id)
    if not event.event_id:
        # No id: fall back to the signature/body so an exact replay is still caught.
        material = lowered.get(sig_header, "").encode() + b"|" + raw_body
        event.event_id = "sha256:" + hashlib.sha256(material).hexdigest()
    return event


def handle_webhook(
    body: bytes | str,
    headers: Mapping[str, Any] | None,
    signing_key: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    seen_store: SeenStore | None = None,
    handlers: HandlerRegistry | None = None,
    client: Client | None = None,
) -> WebhookEvent:
    """Verify, de-duplicate, parse and dispatch one webhook delivery; return the event.

    Detects the format from the headers (case-insensitive). ``signing_key=None`` skips
    the signature and timestamp checks (for callers that verified already).
    Raises ``ValueError`` on a bad signature, a stale timestamp or a replayed event id.
    Callbacks come from ``guard_tool(..., approval_mode="webhook")`` in this process (by
    action id) or from :func:`register_handler` (by tool name).

    Before ``on_approval`` runs, the action is claimed in Warden (as the wait and async modes
    do), so it runs at most once, whichever process or delivery gets there first: if it was
    claimed already, ``on_approval`` is not called. Afterwards the outcome is reported
    (``success``, or ``failed`` if the callback raised). The claim uses ``client``, else the
    client registered with the callback, else the process-wide one
    (:class:`~wardenpy.ConfigurationError` if there is none). If the claim cannot be made
    (no client, Warden unreachable) or a callback raises, the event id is forgotten so the
    server's redelivery tries again, and the error propagates.
    """
    store = seen_store if seen_store is not None else _default_seen_store
    reg = handlers if handlers is not None else registry
    event = verify_and_parse(body, headers, signing_key, tolerance=tolerance)
    assert event.event_id is not None
    if not store.add(event.event_id):
        raise ValueError(f"webhook event {event.event_id} was already processed (replay)")
    if event.event_type in ("action_approved", "action_denied") and not event.action_id:
        store.discard(event.event_id)
        raise WardenError("webhook payload has no action id")

    taken = reg.take_with_client(event)
    if taken is None:
        if event.event_type in ("action_approved", "action_denied"):
            logger.warning(
                "wardenpy: no handler for %s on action %s (tool %r); register one with "
                "wardenpy.register_handler(tool_name, on_approval, on_denial)",
                event.event_type,
                event.action_id,
                event.tool_name,
            )
        return event
    callback, registered_client = taken
    try:
        if not event.approved:
            _finish_awaitable(callback(event))
            return event
        claimer = client or registered_client or _process_client()
        if not _claim(claimer, event):
            return event
        _run_approved(claimer, callback, event)
    except BaseException:
        store.discard(event.event_id)
        reg.release(event.action_id)
        raise
    return event


def _process_client() -> Client:
    try:
        return get_client()
    except ConfigurationError as exc:
        raise ConfigurationError(
            "handle_webhook needs a Warden client to claim an approved action before "
            "on_approval runs: call wardenpy.configure(api_key=..., api_url=...) in the "
            "receiving process, or pass client= to handle_webhook or register_handler",
            setting=exc.setting,
        ) from exc


def _claim(client: Client, event: WebhookEvent) -> bool:
    """Claim the approved action; False if it may not run here (claimed, or not approved)."""
    try:
        client.claim(event.action_id)
    except AlreadyClaimedError:
        logger.info(
            "wardenpy: action %s was already claimed (it ran, or runs, elsewhere); "
            "on_approval not called",
            event.action_id,
        )
        return False
    except ConflictError as exc:
        logger.warning(
            "wardenpy: action %s cannot be claimed (it is %s); on_approval not called",
            event.action_id,
            exc.status,
        )
        return False
    return True


def _run_approved(client: Client, callback: Callback, event: WebhookEvent) -> None:
    """Run a claimed action's ``on_approval`` and report its outcome."""

    def report(error: BaseException | None) -> None:
        if error is None:
            client.report_outcome_later(event.action_id, "success")
        else:
            client.report_outcome_later(event.action_id, "failed", _error_text(error))

    try:
        result = callback(event)
    except BaseException as exc:
        report(exc)
        raise
    _finish_awaitable(result, report)


def _finish_awaitable(
    result: Any, done: Callable[[BaseException | None], None] | None = None
) -> None:
    """Run a coroutine returned by an async callback; ``done(error)`` once it has finished."""
    import asyncio
    import inspect

    if not inspect.isawaitable(result):
        if done is not None:
            done(None)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        try:
            asyncio.run(_await(result))
        except BaseException as exc:
            if done is not None:
                done(exc)
            raise
        if done is not None:
            done(None)
        return
    # Inside a running loop (e.g. FastAPI): schedule it; keep a reference until done.
    task = loop.create_task(_await(result))
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)
    if done is not None:
        task.add_done_callback(
            lambda t: done(asyncio.CancelledError() if t.cancelled() else t.exception())
        )


async def _await(awaitable: Any) -> Any:
    return await awaitable


_background_tasks: set[Any] = set()
