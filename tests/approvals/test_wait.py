"""Long-poll: approval_wait_for_decision wakes on the decision, not at its timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from django.conf import settings
from django.db import connection

from approvals import wakeup
from approvals.selectors import approval_wait_for_decision
from approvals.services import approval_decide
from tests.approvals.conftest import request_create

WAIT = 30.0


def test_an_already_decided_request_returns_at_once(db, bob, pending):
    approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    assert approval_wait_for_decision(action_id=pending.action_id, timeout=WAIT) == "approved"


def test_an_unknown_action_returns_none(db):
    assert approval_wait_for_decision(action_id="act_missing", timeout=WAIT) is None


def test_a_pending_request_returns_pending_after_the_timeout(db, pending):
    assert approval_wait_for_decision(action_id=pending.action_id, timeout=0.05) == "pending"


def test_a_request_that_expires_while_waiting_returns_expired(db, agent_a):
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import ApprovalRequest

    request = request_create(agent_a)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() + timedelta(milliseconds=200)
    )
    assert approval_wait_for_decision(action_id=request.action_id, timeout=WAIT) == "expired"


def _wait_in_thread(action_id: str, results: dict) -> threading.Thread:
    def run() -> None:
        try:
            results["status"] = approval_wait_for_decision(action_id=action_id, timeout=WAIT)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _until_registered(action_id: str) -> None:
    import time

    for _ in range(500):
        if wakeup._waiters.get(action_id):
            return
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_waiter_wakes_when_the_request_is_decided(org_a, agent_a, bob):
    request = request_create(agent_a)
    results: dict = {}
    thread = _wait_in_thread(request.action_id, results)
    _until_registered(request.action_id)
    approval_decide(request_or_action_id=request.action_id, actor_user=bob, approve=True)
    thread.join(WAIT / 2)
    assert not thread.is_alive()  # woke long before the 30 s timeout
    assert results["status"] == "approved"


WAITER_SCRIPT = """
import sys, django
django.setup()
from approvals import wakeup
from approvals.selectors import approval_wait_for_decision
wakeup.SAFETY_SECONDS = 120  # with Redis only the published message can wake it in time
wakeup.wait_slice()  # subscribed before we say we are ready
print("ready", flush=True)
print(approval_wait_for_decision(action_id=sys.argv[1], timeout=60), flush=True)
"""


def _waiter_process(action_id: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    return subprocess.Popen(
        [sys.executable, "-c", WAITER_SCRIPT, action_id],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(settings.BASE_DIR),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
def test_a_waiter_in_another_process_is_woken_through_redis(org_a, agent_a, bob):
    request = request_create(agent_a)
    waiter = _waiter_process(request.action_id)
    try:
        assert waiter.stdout.readline().strip() == "ready"
        approval_decide(request_or_action_id=request.action_id, actor_user=bob, approve=False)
        status = waiter.communicate(timeout=30)[0].strip()
    finally:
        waiter.kill()
    assert status == "denied"  # within 30 s, though it would re-read the DB only after 120 s


def test_after_a_failed_publish_the_process_leaves_redis_alone_for_a_moment(
    closing_server, settings
):
    """wake_publish runs after a decision commits; on a Redis that hangs each attempt costs
    its timeouts and redis-py's retries: one attempt a second, not one per decision."""
    settings.REDIS_URL = f"redis://127.0.0.1:{closing_server.port}/0"
    wakeup.wake_publish("act_1", "approved")
    tried = closing_server.count()
    assert tried >= 1
    for n in range(2, 6):
        wakeup.wake_publish(f"act_{n}", "approved")
    assert closing_server.count() == tried
