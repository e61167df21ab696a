"""A small, real HTTP fake of the Warden native API (in-memory), for the SDK's tests.

It implements the contract's endpoints well enough to drive every SDK path: allow, block,
requires_approval with a decision the test controls, long-poll, claim once / 409, outcome
recording, token usage, /sdk/log, and scripted failures (429 + Retry-After, 503, 401...).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

AGENT_KEY = "wdn_test_aliceagentkey"
ORG_KEY = "wdn_org_aliceorgkey"
APPROVER_KEY = "wdn_apv_bobapproverkey"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Scripted:
    method: str
    path_prefix: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class FakeWarden:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.keys = {AGENT_KEY: "agent", ORG_KEY: "org", APPROVER_KEY: "approver"}
        self.policies: dict[str, str | Callable[[dict[str, Any]], str]] = {}
        self.actions: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.scripted: list[Scripted] = []
        self.token_usage: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.decision_bodies: list[dict[str, Any]] = []  # approve/deny bodies, as sent
        self.ignore_wait = False
        self._ids = itertools.count(1)
        self._idempotency: dict[str, dict[str, Any]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> FakeWarden:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # -- test controls ------------------------------------------------------
    def set_policy(self, action: str, decision: str | Callable[[dict[str, Any]], str]) -> None:
        self.policies[action] = decision

    def script(
        self,
        method: str,
        path_prefix: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """The next matching request gets this answer instead of the real one."""
        self.scripted.append(Scripted(method, path_prefix, status, headers or {}, body))

    def decide(
        self, action_id: str, status: str, notes: str | None = None, by: str | None = "user_bob"
    ) -> None:
        with self.cond:
            action = self.actions[action_id]
            action.update(status=status, notes=notes, decided_by=by, decided_at=_now())
            self.cond.notify_all()

    def add_action(
        self,
        action_id: str,
        status: str = "approved",
        action: str = "stripe.refund",
        arguments: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An action the fake knows without a check (e.g. the subject of a hand-made webhook)."""
        with self.cond:
            self.actions[action_id] = {
                "action_id": action_id,
                "agent_id": "agt_alice",
                "action": action,
                "arguments": arguments or {},
                "decision": "requires_approval",
                "status": status,
                "reason": "matched rule",
                "rule": "refund-limit",
                "environment": "test",
                "session_id": None,
                "created_at": _now(),
                "expires_at": None,
                "decided_at": None if status == "pending" else _now(),
                "decided_by": None if status == "pending" else "user_bob",
                "notes": None,
                "approvals": [],
                "approvals_required": 1,
                "claimed_at": None,
                "outcome": None,
            }
            self.cond.notify_all()
            return self.actions[action_id]

    def wait_for_pending(self, timeout: float = 5.0) -> str:
        """Block until some action is pending; return its id."""
        with self.cond:
            found = self.cond.wait_for(
                lambda: next((a for a in self.actions.values() if a["status"] == "pending"), None),
                timeout,
            )
        assert found, "no pending action appeared"
        return found["action_id"]

    def wait_for_outcome(self, action_id: str, timeout: float = 5.0) -> dict[str, Any]:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.actions[action_id]["outcome"] is not None, timeout)
        assert ok, f"no outcome recorded for {action_id}"
        return self.actions[action_id]["outcome"]

    def calls(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- request handling --------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output quiet
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake.cond:
                    fake.requests.append(
                        Recorded(method, parts.path, parse_qs(parts.query), headers, body)
                    )
                    scripted = next(
                        (
                            s
                            for s in fake.scripted
                            if s.method == method and parts.path.startswith(s.path_prefix)
                        ),
                        None,
                    )
                    if scripted is not None:
                        fake.scripted.remove(scripted)
                if scripted is not None:
                    payload = scripted.body
                    if payload is None:
                        payload = {
                            "code": "scripted",
                            "detail": f"scripted {scripted.status}",
                            "field": None,
                        }
                    self._send(scripted.status, payload, scripted.headers)
                    return
                status, payload = fake.route(
                    method, parts.path, parse_qs(parts.query), headers, body
                )
                self._send(status, payload)

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, Any]:
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        kind = self.keys.get(key)
        if kind is None:
            return 401, {"code": "unauthenticated", "detail": "unknown API key", "field": None}
        segments = [s for s in path.split("/") if s]
        body = body if isinstance(body, dict) else {}
        if method == "POST" and path == "/api/v1/check":
            return self._check(kind, headers, body)
        if segments[:3] == ["api", "v1", "actions"] and len(segments) >= 4:
            action = self.actions.get(segments[3])
            if action is None:
                return 404, {"code": "not_found", "detail": "no such action", "field": None}
            if method == "GET" and len(segments) == 4:
                return self._get_action(action, query)
            if method == "POST" and len(segments) == 5:
                return self._action_post(kind, action, segments[4], body)
        if method == "POST" and path == "/api/v1/token-usage":
            with self.cond:
                self.token_usage.append(body)
                self.cond.notify_all()
            total = int(body.get("prompt_tokens", 0)) + int(body.get("completion_tokens", 0))
            return 201, {
                "usage_id": f"use_{next(self._ids)}",
                "total_tokens": total,
                "total_cost_usd": "0.0",
            }
        if method == "POST" and path == "/sdk/log":
            with self.cond:
                self.logs.append(body)
            return 200, {
                "id": f"log_{next(self._ids)}",
                "agent_id": body.get("agent_id"),
                "organization_id": "org_alice",
                "action": body.get("action"),
                "status": body.get("status"),
                "context": body.get("context"),
                "created_at": _now(),
            }
        return 404, {"code": "not_found", "detail": f"no route {method} {path}", "field": None}

    def _check(self, kind: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if kind == "approver":
            return 403, {"code": "forbidden", "detail": "approver keys cannot check", "field": None}
        if kind == "org" and not body.get("agent"):
            return 400, {
                "code": "invalid",
                "detail": "org keys must name the agent",
                "field": "agent",
            }
        if not body.get("action"):
            return 400, {"code": "invalid", "detail": "action is required", "field": "action"}
        idem = headers.get("idempotency-key")
        with self.cond:
            if idem and idem in self._idempotency:
                return 200, self._idempotency[idem]
            policy = self.policies.get(body["action"], "allow")
            decision = policy(body.get("arguments") or {}) if callable(policy) else policy
            status = {"allow": "allowed", "block": "blocked", "requires_approval": "pending"}[
                decision
            ]
            action_id = f"act_{next(self._ids)}"
            self.actions[action_id] = {
                "action_id": action_id,
                "agent_id": body.get("agent") or "agt_alice",
                "action": body["action"],
                "arguments": body.get("arguments") or {},
                "decision": decision,
                "status": status,
                "reason": "blocked by rule" if decision == "block" else "matched rule",
                "rule": "refund-limit" if decision != "allow" else None,
                "environment": "test",
                "session_id": body.get("session_id"),
                "created_at": _now(),
                "expires_at": None,
                "decided_at": None,
                "decided_by": None,
                "notes": None,
                "approvals": [],
                "approvals_required": 1,
                "claimed_at": None,
                "outcome": None,
            }
            self.cond.notify_all()
            answer = {
                "decision": decision,
                "action_id": action_id,
                "status": status,
                "reason": self.actions[action_id]["reason"],
                "rule": self.actions[action_id]["rule"],
                "message": "Refunds above 100 are blocked" if decision == "block" else None,
                "environment": "test",
                "expires_at": None,
            }
            if idem:
                self._idempotency[idem] = answer
        return 200, answer

    def _get_action(self, action: dict[str, Any], query: dict[str, list[str]]) -> tuple[int, Any]:
        wait = float(query.get("wait", ["0"])[0])
        if wait and not self.ignore_wait:
            with self.cond:
                self.cond.wait_for(lambda: action["status"] != "pending", timeout=min(wait, 60))
        with self.cond:
            return 200, dict(action)

    def _action_post(
        self, kind: str, action: dict[str, Any], verb: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        with self.cond:
            if verb == "claim":
                if action["claimed_at"] is not None:
                    return 409, {
                        "code": "already_claimed",
                        "detail": "already claimed",
                        "status": action["status"],
                    }
                if action["status"] not in ("approved", "allowed"):
                    return 409, {
                        "code": "not_approved",
                        "detail": "not approved",
                        "status": action["status"],
                    }
                action["claimed_at"] = _now()
                return 200, {
                    "action_id": action["action_id"],
                    "status": action["status"],
                    "claimed_at": action["claimed_at"],
                }
            if verb == "outcome":
                action["outcome"] = {
                    "status": body.get("status"),
                    "error": body.get("error"),
                    "at": _now(),
                }
                self.cond.notify_all()
                return 201, {"action_id": action["action_id"], "outcome": action["outcome"]}
            if verb in ("approve", "deny"):
                if kind != "approver":
                    return 403, {"code": "forbidden", "detail": "cannot decide", "field": None}
                self.decision_bodies.append(body)
                if action["status"] != "pending":
                    return 409, {
                        "code": "conflict",
                        "detail": "already decided",
                        "status": action["status"],
                    }
                action.update(
                    status="approved" if verb == "approve" else "denied",
                    notes=body.get("notes"),
                    decided_by="apv_bob",
                    decided_at=_now(),
                )
                self.cond.notify_all()
                return 200, dict(action)
        return 404, {"code": "not_found", "detail": "no such route", "field": None}
