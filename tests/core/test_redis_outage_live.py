"""A Redis outage under load, with the real processes: gunicorn serving Warden, a Celery
worker (with beat) and a webhook receiver, all on a private Redis that is SIGKILLed and
started again on the same port (empty: it persists nothing).

While it is down every answer is JSON and checks, decisions and status reads answer as
usual; once it is back every committed event reaches the receiver within 60 s and the
worker is still running. (Before: HTML 500s for every keyed request, and workers that
exited with "Unrecoverable error: AttributeError(... 'hostname')".)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus

import pytest
import requests

from accounts.models import Plan
from agents import services as agent_services
from tests.live import wait_until
from webhooks.models import Event
from webhooks.services import EVENT_TYPES, endpoint_create

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.live]

OUTAGE_SECONDS = 8  # long enough for the worker to lose its connection and retry a few times
DRIVERS = 3  # concurrent agents while Redis is down
DELIVERED_WITHIN = 60  # seconds after Redis is back


@pytest.fixture
def celery_worker_settings() -> str:
    return "tests.webhooks.worker_settings"  # sweeps every 0.5 s


@pytest.fixture
def celery_worker_env(private_redis) -> dict[str, str]:
    return {"REDIS_URL": private_redis.url}


@pytest.fixture
def live_web_env(private_redis) -> dict[str, str]:
    return {"REDIS_URL": private_redis.url}


@dataclass
class Keys:
    agent: str
    approver: str


@dataclass
class Answers:
    """Every answer the web server gave: (method path, status, content type)."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, response: requests.Response) -> requests.Response:
        with self.lock:
            self.seen.append((what, response.status_code, response.headers.get("Content-Type")))
        return response

    def not_json(self) -> list[tuple[str, int, str]]:
        return [a for a in self.seen if a[2] != "application/json"]

    def failed(self) -> list[tuple[str, int, str]]:
        return [a for a in self.seen if a[1] != HTTPStatus.OK]


def one_round(session: requests.Session, base: str, keys: Keys, answers: Answers, n: int) -> None:
    """What an agent and a reviewer do: an allowed check, a held one, its status, the
    decision, the status again (plain, long-poll and Arden's)."""
    agent = {"X-API-Key": keys.agent}

    def call(method: str, path: str, headers: dict, **kwargs) -> requests.Response:
        response = session.request(method, base + path, headers=headers, timeout=30, **kwargs)
        return answers.record(f"{method} {path.split('/act_')[0]}", response)

    call("POST", "/api/v1/check", agent, json={"action": "kb.search", "arguments": {}})
    held = call(
        "POST",
        "/api/v1/check",
        agent,
        json={"action": "stripe.refund", "arguments": {"amount": 150 + n}},
    )
    if held.status_code != HTTPStatus.OK or held.headers.get("Content-Type") != "application/json":
        return
    action_id = held.json()["action_id"]
    call("GET", f"/api/v1/actions/{action_id}", agent)
    call("POST", f"/api/v1/actions/{action_id}/approve", {"X-API-Key": keys.approver}, json={})
    call("GET", f"/api/v1/actions/{action_id}?wait=2", agent)
    call("GET", f"/status/{action_id}", agent)


def drive(base: str, keys: Keys, answers: Answers, until: float) -> None:
    """DRIVERS agents doing rounds until ``until`` (monotonic), at least two rounds each."""

    def agent_loop(offset: int) -> None:
        with requests.Session() as session:
            n = 0
            while n < 2 or time.monotonic() < until:
                one_round(session, base, keys, answers, offset + n)
                n += 1

    threads = [threading.Thread(target=agent_loop, args=(1000 * d,)) for d in range(DRIVERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_redis_outage_under_load_answers_json_and_loses_no_event(
    private_redis, celery_worker, live_web, webhook_receiver, org_a, alice
):
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=100_000)
    agent = agent_services.agent_create(organization=org_a, actor=alice, name="outage-bot")
    agent_services.rule_create(
        organization=org_a,
        agent=agent,
        data={
            "name": "refund limit",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "max_amount": 100,
        },
        actor=alice,
    )
    keys = Keys(
        agent=agent_services.api_key_create(
            organization=org_a, kind="agent", agent=agent, environment="live", actor=alice
        )[1],
        approver=agent_services.api_key_create(organization=org_a, kind="approver", actor=alice)[1],
    )
    endpoint_create(
        actor=None,
        organization=org_a,
        url=webhook_receiver.url(),
        fmt="standard",
        events=list(EVENT_TYPES),
    )
    before, during, after = Answers(), Answers(), Answers()

    drive(live_web.url, keys, before, until=0)
    assert before.seen and not before.failed() and not before.not_json()

    private_redis.kill()
    drive(live_web.url, keys, during, until=time.monotonic() + OUTAGE_SECONDS)
    ready = during.record("GET /readyz", requests.get(f"{live_web.url}/readyz", timeout=30))
    assert during.not_json() == []
    assert during.failed() == []
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["broker"] == "down"

    private_redis.start()
    drive(live_web.url, keys, after, until=0)
    assert after.not_json() == [] and after.failed() == []

    committed = set(Event.objects.filter(organization=org_a).values_list("public_id", flat=True))
    assert len(committed) >= 4 * DRIVERS * 3  # held + decided, before, during and after

    def all_delivered() -> bool:
        received = {r.headers.get("webhook-id") for r in webhook_receiver.received()}
        return committed <= received

    wait_until(all_delivered, timeout=DELIVERED_WITHIN, interval=0.5, what="every event")
    assert celery_worker.process.poll() is None, celery_worker.log()[-4000:]
    assert "Unrecoverable error" not in celery_worker.log()
