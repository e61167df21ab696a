"""``Client``: the native Warden API (check, actions, claim, outcome, token usage, log)."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from . import background
from .config import WardenConfig, build_config, config_generation, get_config
from .exceptions import (
    ApprovalRequiredError,
    ApprovalTimeoutError,
    PolicyDeniedError,
    ServerUnreachableError,
    WardenError,
)
from .session import get_session
from .transport import Transport
from .types import ActionState, CheckResult, LogResult, to_jsonable

logger = logging.getLogger("wardenpy")

T = TypeVar("T")

MAX_LONG_POLL = 60


class Client:
    """A client for one Warden server and one API key.

    ``Client(api_key, api_url)`` validates like :func:`wardenpy.configure` (and falls back to
    the ``WARDEN_*`` environment variables). Safe to share between threads.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        environment: str | None = None,
        timeout: float = 30.0,
        poll_interval: float = 2.0,
        max_poll_time: float = 300.0,
        retry_attempts: int = 3,
        *,
        retry_backoff: float = 0.5,
        max_retry_after: float = 30.0,
        config: WardenConfig | None = None,
    ) -> None:
        if config is None:
            config = build_config(
                api_key,
                api_url,
                environment,
                timeout,
                poll_interval,
                max_poll_time,
                retry_attempts,
                retry_backoff=retry_backoff,
                max_retry_after=max_retry_after,
                allow_approver_key=True,
            )
        self.config = config
        self.transport = Transport(config)

    def __repr__(self) -> str:
        return f"Client(api_url={self.config.api_url!r}, key={self.config.masked_key!r})"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- policy check ------------------------------------------------------
    def check(
        self,
        agent_id: str | None = None,
        action: str | None = None,
        context: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> CheckResult:
        """``POST /api/v1/check``. ``agent_id`` is sent as ``agent`` (needed for org keys).

        ``session_id`` defaults to the current :func:`wardenpy.get_session`.
        """
        if not action:
            raise WardenError("check() needs an action name, e.g. 'stripe.refund'")
        body: dict[str, Any] = {"action": action, "arguments": to_jsonable(context or {})}
        if agent_id and self.config.key_kind != "agent":
            body["agent"] = agent_id
        elif self.config.key_kind == "org":
            raise WardenError("an org key (wdn_org_...) needs check(agent_id=...)")
        session_id = session_id if session_id is not None else get_session()
        if session_id:
            body["session_id"] = session_id
        if metadata:
            body["metadata"] = to_jsonable(metadata)
        # The same key on every retry, so a retried check never creates a second action.
        headers = {"Idempotency-Key": idempotency_key or f"wdnpy_{uuid.uuid4().hex}"}
        data = self.transport.request("POST", "/api/v1/check", json=body, headers=headers)
        result = CheckResult.from_json(data or {})
        if result.decision not in ("allow", "block", "requires_approval"):
            raise WardenError(f"Warden answered an unknown decision {result.decision!r}")
        return result

    # -- actions -----------------------------------------------------------
    def get_action(self, action_id: str, wait: float | None = None) -> ActionState:
        """``GET /api/v1/actions/{id}``; ``wait`` (0..60 s) long-polls for a decision."""
        params = None
        timeout = None
        if wait:
            seconds = max(0, min(MAX_LONG_POLL, math.ceil(wait)))
            params = {"wait": seconds}
            timeout = seconds + self.config.timeout
        data = self.transport.request(
            "GET", f"/api/v1/actions/{action_id}", params=params, timeout=timeout
        )
        return ActionState.from_json(data or {})

    def wait_for_decision(
        self, action_id: str, max_wait: float | None = None, *, tool_name: str | None = None
    ) -> ActionState:
        """Long-poll until the action leaves ``pending``; :class:`ApprovalTimeoutError` after
        ``max_wait`` (default ``max_poll_time``) seconds.

        Transient network failures while waiting are retried until the deadline.
        """
        max_wait = self.config.max_poll_time if max_wait is None else max_wait
        deadline = time.monotonic() + max_wait
        last_error: ServerUnreachableError | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(MAX_LONG_POLL, remaining)
            started = time.monotonic()
            try:
                state = self.get_action(action_id, wait=wait)
            except ServerUnreachableError as exc:
                last_error = exc
                time.sleep(max(0.0, min(self.config.poll_interval, deadline - time.monotonic())))
                continue
            last_error = None
            if not state.is_pending:
                return state
            # A server that ignores ?wait answers at once: fall back to polling.
            if time.monotonic() - started < min(wait, 1.0) / 2:
                time.sleep(max(0.0, min(self.config.poll_interval, deadline - time.monotonic())))
        error = ApprovalTimeoutError(action_id, max_wait, tool_name=tool_name)
        if last_error is not None:
            raise error from last_error
        raise error

    def claim(self, action_id: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /api/v1/actions/{id}/claim``: take the right to run an approved action once.

        With ``arguments`` the server refuses the claim (409 ``arguments_mismatch``) unless
        they are the arguments that were approved. Raises :class:`AlreadyClaimedError` when
        someone else claimed it first.
        """
        body: dict[str, Any] = {}
        if arguments is not None:
            body["arguments"] = to_jsonable(arguments)
        return cast(
            dict[str, Any],
            self.transport.request(
                "POST",
                f"/api/v1/actions/{action_id}/claim",
                json=body,
                headers={"Idempotency-Key": f"wdnpy_claim_{action_id}"},
            ),
        )

    def report_outcome(
        self,
        action_id: str,
        status: str,
        error: str | None = None,
        result: Any = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/actions/{id}/outcome`` with ``success`` / ``failed`` / ``blocked``."""
        if status not in ("success", "failed", "blocked"):
            raise WardenError(f"outcome status must be success, failed or blocked, not {status!r}")
        body: dict[str, Any] = {"status": status}
        if error is not None:
            body["error"] = error[:4000]
        if result is not None:
            body["result"] = to_jsonable(result)
        return cast(
            dict[str, Any],
            self.transport.request("POST", f"/api/v1/actions/{action_id}/outcome", json=body),
        )

    def report_outcome_later(self, action_id: str, status: str, error: str | None = None) -> None:
        """Queue :meth:`report_outcome` on the background worker (never blocks)."""
        background.worker.submit(self.report_outcome, action_id, status, error)

    def approve(
        self, action_id: str, notes: str | None = None, grant: dict[str, Any] | None = None
    ) -> ActionState:
        """Approve a pending action (approver key or member session only). ``grant``
        remembers the approval within what the rule allows, e.g. ``{"kind": "identical",
        "ttl": "1h"}`` (the server's docs/API.md, "Remembered approvals")."""
        body: dict[str, Any] = {"notes": notes}
        if grant is not None:
            body["grant"] = grant
        data = self.transport.request("POST", f"/api/v1/actions/{action_id}/approve", json=body)
        return ActionState.from_json(data or {})

    def deny(self, action_id: str, notes: str | None = None) -> ActionState:
        """Deny a pending action (approver key or member session only)."""
        data = self.transport.request(
            "POST", f"/api/v1/actions/{action_id}/deny", json={"notes": notes}
        )
        return ActionState.from_json(data or {})

    def list_approvals(self, status: str = "pending") -> list[ActionState]:
        data = self.transport.request("GET", "/api/v1/approvals", params={"status": status})
        return [ActionState.from_json(item) for item in (data or {}).get("results", [])]

    # -- usage and logs ----------------------------------------------------
    def log_token_usage(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/token-usage`` (synchronous; see :func:`wardenpy.log_token_usage`)."""
        body: dict[str, Any] = {
            "model": model,
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(completion_tokens),
        }
        session_id = session_id if session_id is not None else get_session()
        if session_id:
            body["session_id"] = session_id
        return cast(
            dict[str, Any], self.transport.request("POST", "/api/v1/token-usage", json=body)
        )

    def log(
        self,
        agent_id: str,
        action: str,
        status: str,
        context: dict[str, Any] | None = None,
    ) -> LogResult:
        """Record a free-form log entry (``POST /sdk/log``, AgentWarden-compatible).

        ``status`` is ``success``, ``blocked``, ``failed`` or ``pending_approval``.
        """
        body = {
            "agent_id": agent_id,
            "action": action,
            "status": status,
            "context": to_jsonable(context) if context is not None else None,
        }
        data = self.transport.request("POST", "/sdk/log", json=body) or {}
        return LogResult(
            id=str(data.get("id", "")),
            agent_id=data.get("agent_id"),
            organization_id=data.get("organization_id"),
            action=str(data.get("action", action)),
            status=str(data.get("status", status)),
            context=data.get("context"),
            created_at=data.get("created_at"),
            raw=dict(data),
        )

    def execute(
        self,
        agent_id: str | None,
        action: str,
        callback: Callable[[], T],
        context: dict[str, Any] | None = None,
    ) -> T:
        """Check; run ``callback()`` if allowed; record the outcome (as AgentWarden does).

        Raises :class:`PolicyDeniedError` when blocked and :class:`ApprovalRequiredError`
        (with ``action_id``) when a human must decide first; ``callback`` did not run.
        The server already logged the check, so no extra log entry is written for those.
        """
        result = self.check(agent_id, action, context)
        if result.requires_approval:
            raise ApprovalRequiredError(action, result.action_id, result.reason)
        if not result.allowed:
            raise PolicyDeniedError(
                result.message or result.reason or f"Action {action!r} is blocked by policy",
                tool_name=action,
                action_id=result.action_id,
                reason=result.reason,
                rule=result.rule,
                status=result.status,
            )
        try:
            value = callback()
        except BaseException as exc:
            if result.action_id:
                self.report_outcome_later(result.action_id, "failed", _error_text(exc))
            raise
        if result.action_id:
            self.report_outcome_later(result.action_id, "success")
        return value


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_default_lock = threading.Lock()
_default: tuple[int, Client] | None = None


def get_client() -> Client:
    """The process-wide client built from :func:`wardenpy.configure`."""
    global _default
    generation = config_generation()
    current = _default
    if current is not None and current[0] == generation:
        return current[1]
    with _default_lock:
        if _default is None or _default[0] != generation:
            if _default is not None:
                _default[1].close()
            _default = (generation, Client(config=get_config()))
        return _default[1]
