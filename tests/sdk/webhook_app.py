"""A tiny agent web app, run as its own process by the webhook tests.

It does what the SDK guide tells a user to do: at import time it configures wardenpy from
``WARDEN_API_KEY`` / ``WARDEN_API_URL``, guards ``stripe.refund`` in webhook mode and
registers handlers for it by tool name; ``POST /hook`` hands each delivery to
``wardenpy.handle_webhook``. ``POST /call`` makes a guarded call (as the agent would).

Everything it sees is appended as JSON lines to ``RECORD_PATH``: every delivery (with its
verdict, raw body and headers) and every callback (with this process's pid), so the test
can tell which process acted on a decision.

Environment: PORT, WARDEN_API_KEY, WARDEN_API_URL, WEBHOOK_SECRET, RECORD_PATH, SEEN_DB.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import wardenpy

TOOL_NAME = "stripe.refund"
RECORD_PATH = os.environ["RECORD_PATH"]
SECRET = os.environ["WEBHOOK_SECRET"]
_record_lock = threading.Lock()


def record(kind: str, **data: Any) -> None:
    line = json.dumps({"kind": kind, "pid": os.getpid(), **data})
    with _record_lock, open(RECORD_PATH, "a") as out:
        out.write(line + "\n")


def issue_refund(amount: float, customer_id: str) -> str:
    record("refund", amount=amount, customer_id=customer_id)
    return f"refunded {amount} to {customer_id}"


def on_approval(event: wardenpy.WebhookEvent) -> None:
    record(
        "approval",
        action_id=event.action_id,
        tool_name=event.tool_name,
        context=event.context,
        approved_by=event.approved_by,
        notes=event.notes,
    )
    issue_refund(**event.context)  # the SDK does not re-run the tool: the callback does


def on_denial(event: wardenpy.WebhookEvent) -> None:
    record("denial", action_id=event.action_id, tool_name=event.tool_name, notes=event.notes)


wardenpy.configure(max_poll_time=30, retry_attempts=1)
wardenpy.set_seen_store(wardenpy.SqliteSeenStore(os.environ["SEEN_DB"]))
wardenpy.register_handler(TOOL_NAME, on_approval, on_denial)
guarded_refund = wardenpy.guard_tool(
    TOOL_NAME, issue_refund, approval_mode="webhook", on_approval=on_approval, on_denial=on_denial
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, {"ok": True})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/call":
            pending = guarded_refund(**json.loads(body))
            self._answer(200, {"action_id": pending.action_id})
            return
        headers = dict(self.headers.items())
        try:
            event = wardenpy.handle_webhook(body, headers, SECRET)
        except ValueError as error:
            status, verdict = 400, {"error": str(error)}
        except Exception as error:
            status, verdict = 500, {"error": f"{type(error).__name__}: {error}"}
        else:
            status, verdict = 200, {"event_id": event.event_id, "event_type": event.event_type}
        record(
            "delivery",
            status=status,
            body=base64.b64encode(body).decode(),
            headers=headers,
            **verdict,
        )
        self._answer(status, verdict)

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
