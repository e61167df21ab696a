"""A local stand-in for Slack's Web API, and interaction payloads signed as Slack signs them.

``SlackStandIn`` is a threaded HTTP server answering ``POST|GET /api/<method>`` for the
methods Warden calls (auth.test, chat.postMessage, chat.update, chat.postEphemeral,
views.open, users.info). It records every call (method, token, parameters, time) and can be
told to answer a method with a scripted status and headers (a 429 with Retry-After).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit


@dataclass
class SlackCall:
    method: str
    token: str
    params: dict[str, Any]
    at: float


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class SlackStandIn:
    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self.teams: dict[str, tuple[str, str]] = {}  # token -> (team id, team name)
        self.users: dict[str, str] = {}  # Slack user id -> profile email
        self._scripts: dict[str, list[Scripted]] = {}
        self.before: dict[str, Any] = {}  # method -> a callable run before it is answered
        self._ts = 0
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                url = urlsplit(self.path)
                method = url.path.rsplit("/", 1)[-1]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                params: dict[str, Any] = dict(parse_qsl(url.query))
                if raw:
                    if (self.headers.get("Content-Type") or "").startswith("application/json"):
                        params.update(json.loads(raw))
                    else:
                        params.update(parse_qsl(raw.decode()))
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if method in standin.before:
                    standin.before.pop(method)()
                status, body, headers = standin._respond(method, token, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _answer
            do_GET = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def then(self, method: str, status: int, body: dict[str, Any], **headers: str) -> None:
        """Answer the next call of ``method`` with this (then as usual)."""
        with self._lock:
            self._scripts.setdefault(method, []).append(Scripted(status, body, headers))

    def received(self, method: str | None = None) -> list[SlackCall]:
        with self._lock:
            return [call for call in self.calls if method is None or call.method == method]

    def _respond(
        self, method: str, token: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.calls.append(SlackCall(method, token, params, time.time()))
            script = self._scripts.get(method)
            if script:
                answer = script.pop(0)
                return answer.status, answer.body, answer.headers
            if token not in self.teams:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            team_id, team_name = self.teams[token]
            if method == "auth.test":
                body = {"ok": True, "team_id": team_id, "team": team_name, "user_id": "UBOT"}
            elif method == "chat.postMessage":
                self._ts += 1
                body = {"ok": True, "channel": "C0CHANNEL", "ts": f"1700000000.{self._ts:06d}"}
            elif method == "chat.update":
                body = {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
            elif method == "chat.postEphemeral":
                body = {"ok": True, "message_ts": "1700000001.000001"}
            elif method == "views.open":
                body = {"ok": True, "view": {"id": "V1"}}
            elif method == "users.info":
                user_id = params.get("user")
                if user_id not in self.users:
                    return 200, {"ok": False, "error": "user_not_found"}, {}
                profile = {"email": self.users[user_id]}
                body = {"ok": True, "user": {"id": user_id, "is_bot": False, "profile": profile}}
            else:
                body = {"ok": False, "error": "unknown_method"}
            return 200, body, {}


def slack_signature(secret: str, timestamp: str, body: str) -> str:
    """What Slack sends in X-Slack-Signature: v0= HMAC-SHA256 of v0:timestamp:body."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_interaction(
    payload: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """The form body and headers Slack sends to the Interactivity Request URL."""
    body = urlencode({"payload": json.dumps(payload)})
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return body, {
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": stamp,
        "HTTP_X_SLACK_SIGNATURE": slack_signature(secret, stamp, body),
    }


def block_action(
    *, team_id: str, user_id: str, action: str, action_id: str, channel: str = "C0CHANNEL"
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "acme"},
        "user": {"id": user_id, "team_id": team_id},
        "channel": {"id": channel},
        "trigger_id": "trigger.123",
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [{"action_id": action, "block_id": "decision", "value": action_id}],
    }


def reject_submission(
    *, team_id: str, user_id: str, action_id: str, notes: str = ""
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": team_id},
        "user": {"id": user_id, "team_id": team_id},
        "view": {
            "callback_id": "warden_reject_modal",
            "private_metadata": action_id,
            "state": {
                "values": {"notes": {"notes_input": {"type": "plain_text_input", "value": notes}}}
            },
        },
    }


def remember_submission(
    *,
    team_id: str,
    user_id: str,
    action_id: str,
    kind: str,
    ttl: str = "1h",
    max_amount: str = "",
    uses: str = "",
    notes: str = "",
) -> dict[str, Any]:
    """The "Approve and remember" modal submitted, its state as Slack sends it (an empty
    text input's value is null)."""

    def text(value: str) -> dict[str, Any]:
        return {"value": {"type": "plain_text_input", "value": value or None}}

    return {
        "type": "view_submission",
        "team": {"id": team_id},
        "user": {"id": user_id, "team_id": team_id},
        "view": {
            "callback_id": "warden_remember_modal",
            "private_metadata": action_id,
            "state": {
                "values": {
                    "kind": {
                        "value": {
                            "type": "static_select",
                            "selected_option": {
                                "text": {"type": "plain_text", "text": kind},
                                "value": kind,
                            },
                        }
                    },
                    "ttl": text(ttl),
                    "max_amount": text(max_amount),
                    "uses": text(uses),
                    "notes": text(notes),
                }
            },
        },
    }
