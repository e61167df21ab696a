"""Fixtures for the end-to-end tests of the wardenpy SDK against a live Warden server.

Alice's support bot in Acme (Pro plan) has the seed scenario's policy: refunds over 100
need a human (``stripe.refund``), deletes are blocked, knowledge-base searches pass, and
``stripe.quick_refund`` needs a human who must decide within one second. Bob, an approver
on Alice's team, decides through ``approval_decide``, the service every channel uses.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.cache import cache

import wardenpy
from agents import runtime, services
from agents.models import Agent
from approvals.models import ApprovalRequest
from approvals.services import approval_cancel, approval_decide
from tests.agents.conftest import Keys, add_rule, keys_for
from wardenproject.errors import Conflict
from wardenpy import background
from wardenpy.webhooks import InMemorySeenStore, registry, set_seen_store

QUICK_TIMEOUT_SECONDS = 1


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Per-process caches of the server and the SDK's globals start empty in every test."""
    runtime.caches_clear()
    cache.clear()
    wardenpy.reset_config()
    registry.clear()
    set_seen_store(InMemorySeenStore())
    yield
    background.flush(5)
    if wardenpy.is_configured():
        # Closing the keep-alive sockets ends the live server's threads serving them, and
        # with them their database sessions.
        wardenpy.get_client().close()
    wardenpy.reset_config()
    registry.clear()
    runtime.caches_clear()
    cache.clear()


@pytest.fixture
def support_bot(org_a, alice) -> Agent:
    agent = services.agent_create(organization=org_a, actor=alice, name="support-bot")
    add_rule(
        agent,
        name="refund limit",
        action="stripe.refund",
        effect="requires_approval",
        max_amount=100,
    )
    add_rule(
        agent,
        name="quick refunds",
        action="stripe.quick_refund",
        effect="requires_approval",
        approval={"timeout": QUICK_TIMEOUT_SECONDS},
    )
    add_rule(agent, name="no deletes", action="database.*.delete", effect="block")
    add_rule(agent, name="search ok", action="kb.search", effect="allow")
    return agent


@pytest.fixture
def keys(support_bot, alice) -> Keys:
    return keys_for(support_bot, alice)


@pytest.fixture
def sdk(live_server, keys) -> Iterator[wardenpy.WardenConfig]:
    """The SDK configured as the support bot would be: its test key, the live server.

    Requests still pending at the end are cancelled, so no SDK thread outlives its test
    waiting on them.
    """
    yield wardenpy.configure(
        api_key=keys.test, api_url=live_server.url, max_poll_time=60, retry_attempts=1
    )
    background.flush(5)  # outcome reports reach the server before its database is flushed
    cancel_pending(keys)


def cancel_pending(keys: Keys) -> None:
    for action_id in ApprovalRequest.objects.filter(status="pending").values_list(
        "action_id", flat=True
    ):
        with contextlib.suppress(Conflict):
            approval_cancel(
                request_or_action_id=action_id, actor_key=keys.org_key, reason="test over"
            )


@dataclass
class Calls:
    """Records the calls a tool received, from any thread."""

    made: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, **arguments: Any) -> None:
        with self.lock:
            self.made.append(arguments)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def refund(calls) -> Callable[..., str]:
    def issue_refund(amount: float, customer_id: str) -> str:
        calls.record(amount=amount, customer_id=customer_id)
        return f"refunded {amount} to {customer_id}"

    return issue_refund


@dataclass
class Background:
    """A call running in a thread; ``result()`` joins it and returns or raises its outcome."""

    thread: threading.Thread
    outcome: dict[str, Any]

    def result(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not finish"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["result"]


def in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Background:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call(*args, **kwargs)
        except BaseException as error:  # handed to the test by result()
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return Background(thread, outcome)


def pending_action_id(action: str = "stripe.refund", exclude: set[str] | None = None) -> str:
    """The action id of the (first new) pending request for ``action``, once it exists."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ids = ApprovalRequest.objects.filter(status="pending", action=action).values_list(
            "action_id", flat=True
        )
        fresh = [i for i in ids if i not in (exclude or set())]
        if fresh:
            return fresh[0]
        time.sleep(0.05)
    raise AssertionError(f"no pending approval request for {action} was created")


def decide(action_id: str, reviewer, *, approve: bool, notes: str = "") -> ApprovalRequest:
    """Bob (or another reviewer) decides, through the service every channel uses."""
    return approval_decide(
        request_or_action_id=action_id,
        actor_user=reviewer,
        approve=approve,
        notes=notes,
        source="api",
    )


def action_json(live_server, key: str, action_id: str) -> dict[str, Any]:
    with wardenpy.Client(api_key=key, api_url=live_server.url, retry_attempts=0) as client:
        return client.get_action(action_id).raw


def outcome_of(live_server, key: str, action_id: str) -> dict[str, Any] | None:
    """The outcome the server recorded for ``action_id`` (None until it arrives)."""
    with contextlib.suppress(wardenpy.WardenError):
        return action_json(live_server, key, action_id).get("outcome")
    return None
