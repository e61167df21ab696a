"""Webhook mode end to end: a decision in Warden, a real Celery worker delivering the event,
and a separate agent web app process (tests/sdk/webhook_app.py) whose handler is
``wardenpy.handle_webhook``. That process can be killed and started afresh between the call
and the decision, as a deploy would."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import wardenpy
from tests.live import free_port, wait_until
from tests.sdk.conftest import action_json, cancel_pending, decide, outcome_of
from webhooks import services as webhook_services

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.live]

APP = Path(__file__).with_name("webhook_app.py")


@pytest.fixture
def celery_worker_settings() -> str:
    return "tests.webhooks.worker_settings"


class AgentApp:
    """The agent's web app as a process of its own on a fixed port."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.records_path = workdir / "records.jsonl"
        self.env = {
            **env,
            "PORT": str(self.port),
            "RECORD_PATH": str(self.records_path),
            "SEEN_DB": str(workdir / "seen.sqlite3"),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = workdir / "app.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(APP)], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._answers, timeout=30, what="the agent app to listen")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the agent app exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            return requests.get(self.url, timeout=1).ok
        except requests.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self, *, forget_seen_events: bool = False) -> None:
        """Kill and start again; ``forget_seen_events``: with a fresh replay store (as a
        process with the default in-memory store, or another host, would have)."""
        self.kill()
        if forget_seen_events:
            self.env["SEEN_DB"] = self.env["SEEN_DB"] + "-fresh"
        self.start()

    def call_refund(self, amount: float, customer_id: str) -> str:
        answer = requests.post(
            f"{self.url}/call", json={"amount": amount, "customer_id": customer_id}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["action_id"]

    def records(self, kind: str) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        lines = self.records_path.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["kind"] == kind]

    def post_hook(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(f"{self.url}/hook", data=body, headers=headers, timeout=30)


@pytest.fixture
def agent_app(live_server, keys, tmp_path) -> Iterator[AgentApp]:
    app = AgentApp(
        {**os.environ, "WARDEN_API_KEY": keys.test, "WARDEN_API_URL": live_server.url},
        tmp_path,
    )
    yield app
    app.kill()
    cancel_pending(keys)


def endpoint_for(app: AgentApp, org, fmt: str) -> None:
    created = webhook_services.endpoint_create(
        actor=None, organization=org, url=f"{app.url}/hook", fmt=fmt
    )
    app.env["WEBHOOK_SECRET"] = created.secret


def first_delivery(app: AgentApp) -> tuple[bytes, dict[str, str]]:
    (delivery,) = wait_until(lambda: app.records("delivery"), what="a delivery")
    return base64.b64decode(delivery["body"]), delivery["headers"]


@pytest.mark.parametrize("fmt", ["standard", "arden"])
def test_the_handler_process_that_made_the_call_gets_on_approval(
    celery_worker, agent_app, org_a, bob, fmt
):
    endpoint_for(agent_app, org_a, fmt)
    agent_app.start()
    action_id = agent_app.call_refund(150.0, "cus_abc")
    decide(action_id, bob, approve=True, notes="verified")
    (approval,) = wait_until(lambda: agent_app.records("approval"), what="on_approval")
    assert approval["action_id"] == action_id
    assert approval["context"] == {"amount": 150.0, "customer_id": "cus_abc"}


@pytest.mark.parametrize("fmt", ["standard", "arden"])
def test_a_handler_process_started_after_the_call_acts_on_the_approval(
    celery_worker, agent_app, org_a, bob, fmt
):
    endpoint_for(agent_app, org_a, fmt)
    agent_app.start()
    action_id = agent_app.call_refund(150.0, "cus_abc")
    calling_pid = agent_app.process.pid
    agent_app.restart()  # killed after the check; a fresh process before the decision
    decide(action_id, bob, approve=True, notes="verified")
    (refund,) = wait_until(lambda: agent_app.records("refund"), what="the refund to run")
    assert refund["pid"] == agent_app.process.pid != calling_pid
    assert refund["amount"] == 150.0


def test_a_denial_delivered_by_webhook_calls_on_denial_with_the_notes(
    celery_worker, agent_app, org_a, bob
):
    endpoint_for(agent_app, org_a, "standard")
    agent_app.start()
    action_id = agent_app.call_refund(150.0, "cus_abc")
    decide(action_id, bob, approve=False, notes="not this customer")
    (denial,) = wait_until(lambda: agent_app.records("denial"), what="on_denial")
    assert denial["action_id"] == action_id
    assert denial["notes"] == "not this customer"
    assert agent_app.records("refund") == []


@pytest.mark.parametrize("fmt", ["standard", "arden"])
def test_a_replayed_delivery_is_refused_and_acts_once(celery_worker, agent_app, org_a, bob, fmt):
    endpoint_for(agent_app, org_a, fmt)
    agent_app.start()
    decide(agent_app.call_refund(150.0, "cus_abc"), bob, approve=True)
    body, headers = first_delivery(agent_app)
    replayed = agent_app.post_hook(body, headers)
    assert replayed.status_code == 400
    assert "replay" in replayed.json()["error"]
    assert len(agent_app.records("refund")) == 1


def test_a_replay_to_the_restarted_process_is_refused_too(celery_worker, agent_app, org_a, bob):
    endpoint_for(agent_app, org_a, "standard")
    agent_app.start()
    decide(agent_app.call_refund(150.0, "cus_abc"), bob, approve=True)
    body, headers = first_delivery(agent_app)
    agent_app.restart()
    replayed = agent_app.post_hook(body, headers)
    assert replayed.status_code == 400
    assert len(agent_app.records("refund")) == 1


@pytest.mark.parametrize("fmt", ["standard", "arden"])
def test_a_tampered_delivery_is_refused(celery_worker, agent_app, org_a, bob, fmt):
    endpoint_for(agent_app, org_a, fmt)
    agent_app.start()
    decide(agent_app.call_refund(150.0, "cus_abc"), bob, approve=True)
    body, headers = first_delivery(agent_app)
    tampered = body.replace(b"150.0", b"15000.0")
    assert tampered != body
    refused = agent_app.post_hook(tampered, headers)
    assert refused.status_code == 400
    assert "signature" in refused.json()["error"]
    assert [r["amount"] for r in agent_app.records("refund")] == [150.0]


def test_webhook_mode_claims_the_approval_runs_it_once_and_reports_the_outcome(
    celery_worker, agent_app, live_server, keys, org_a, bob
):
    endpoint_for(agent_app, org_a, "standard")
    agent_app.start()
    action_id = agent_app.call_refund(150.0, "cus_abc")
    decide(action_id, bob, approve=True)
    wait_until(lambda: agent_app.records("refund"), what="the refund to run")
    assert action_json(live_server, keys.test, action_id)["claimed_at"]
    outcome = wait_until(
        lambda: outcome_of(live_server, keys.test, action_id), what="the outcome on the server"
    )
    assert outcome["status"] == "success"

    # The same delivery again, to a process that does not remember it: the claim says no.
    body, headers = first_delivery(agent_app)
    agent_app.restart(forget_seen_events=True)
    again = agent_app.post_hook(body, headers)
    assert again.status_code == 200
    assert len(agent_app.records("refund")) == 1
    assert len(agent_app.records("approval")) == 1


def test_webhook_mode_does_not_run_an_approval_another_process_claimed_first(
    celery_worker, agent_app, live_server, keys, org_a, bob, webhook_receiver
):
    # Deliveries go to a recorder, so the test decides when the agent app gets one.
    created = webhook_services.endpoint_create(
        actor=None, organization=org_a, url=webhook_receiver.url()
    )
    agent_app.env["WEBHOOK_SECRET"] = created.secret
    agent_app.start()
    action_id = agent_app.call_refund(150.0, "cus_abc")
    decide(action_id, bob, approve=True)
    (delivery,) = webhook_receiver.wait_for(1)
    with wardenpy.Client(api_key=keys.test, api_url=live_server.url) as another_worker:
        another_worker.claim(action_id)
    answer = agent_app.post_hook(delivery.body, delivery.headers)
    assert answer.status_code == 200
    assert agent_app.records("approval") == []
    assert agent_app.records("refund") == []
