from __future__ import annotations

import threading
from typing import Any

import pytest
from fake_warden import FakeWarden

import wardenpy
from wardenpy import (
    AlreadyClaimedError,
    ApprovalTimeoutError,
    PendingApproval,
    PolicyDeniedError,
    WebhookEvent,
)


class Refunds:
    """A tool that records every real run."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def __call__(self, amount: float, customer_id: str) -> str:
        with self.lock:
            self.runs.append((amount, customer_id))
        return f"refunded {amount}"


def run_in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


@pytest.fixture
def held(configured: FakeWarden) -> FakeWarden:
    configured.set_policy("stripe.refund", "requires_approval")
    return configured


def test_wait_mode_runs_the_tool_once_after_approval(held: FakeWarden) -> None:
    tool = Refunds()
    safe = wardenpy.guard_tool("stripe.refund", tool)
    thread, box = run_in_thread(safe, 150.0, "cus_abc")
    action_id = held.wait_for_pending()
    assert tool.runs == []
    held.decide(action_id, "approved")
    thread.join(10)
    assert box == {"result": "refunded 150.0"}
    assert tool.runs == [(150.0, "cus_abc")]


def test_wait_mode_long_polls_instead_of_polling_at_a_fixed_interval(held: FakeWarden) -> None:
    safe = wardenpy.guard_tool("stripe.refund", Refunds())
    thread, _ = run_in_thread(safe, 150.0, "cus_abc")
    held.decide(held.wait_for_pending(), "approved")
    thread.join(10)
    polls = held.calls("GET", "/api/v1/actions/")
    assert polls and all(int(p.query["wait"][0]) >= 1 for p in polls)


def test_wait_mode_claims_before_running_and_reports_the_outcome(held: FakeWarden) -> None:
    safe = wardenpy.guard_tool("stripe.refund", Refunds())
    thread, _ = run_in_thread(safe, 150.0, "cus_abc")
    action_id = held.wait_for_pending()
    held.decide(action_id, "approved")
    thread.join(10)
    assert held.actions[action_id]["claimed_at"] is not None
    assert held.wait_for_outcome(action_id)["status"] == "success"


def test_two_workers_resuming_one_approved_action_run_it_only_once(held: FakeWarden) -> None:
    tool = Refunds()
    safe = wardenpy.guard_tool(
        "stripe.refund", tool, approval_mode="webhook", on_approval=print, on_denial=print
    )
    pending = safe(150.0, "cus_abc")
    assert isinstance(pending, PendingApproval)
    first = run_in_thread(safe.resume, pending.action_id, 150.0, "cus_abc")
    second = run_in_thread(safe.resume, pending.action_id, 150.0, "cus_abc")
    held.decide(pending.action_id, "approved")
    for thread, _ in (first, second):
        thread.join(10)
    outcomes = sorted(
        type(box.get("error", box.get("result"))).__name__ for _, box in (first, second)
    )
    assert outcomes == ["AlreadyClaimedError", "str"]
    assert tool.runs == [(150.0, "cus_abc")]


def test_resuming_an_action_claimed_elsewhere_raises_already_claimed(held: FakeWarden) -> None:
    tool = Refunds()
    safe = wardenpy.guard_tool(
        "stripe.refund", tool, approval_mode="webhook", on_approval=print, on_denial=print
    )
    pending = safe(150.0, "cus_abc")
    held.decide(pending.action_id, "approved")
    held.actions[pending.action_id]["claimed_at"] = "2026-01-01T00:00:00Z"
    with pytest.raises(AlreadyClaimedError, match="not run again"):
        safe.resume(pending.action_id, 150.0, "cus_abc")
    assert tool.runs == []


def test_a_denial_raises_with_the_reviewers_notes(held: FakeWarden) -> None:
    tool = Refunds()
    thread, box = run_in_thread(wardenpy.guard_tool("stripe.refund", tool), 150.0, "cus_abc")
    held.decide(held.wait_for_pending(), "denied", notes="customer already refunded")
    thread.join(10)
    error = box["error"]
    assert isinstance(error, PolicyDeniedError)
    assert error.notes == "customer already refunded"
    assert "customer already refunded" in str(error)
    assert tool.runs == []


@pytest.mark.parametrize("status", ["expired", "cancelled"])
def test_an_expired_or_cancelled_approval_raises_policy_denied(
    held: FakeWarden, status: str
) -> None:
    thread, box = run_in_thread(wardenpy.guard_tool("stripe.refund", Refunds()), 1.0, "c")
    held.decide(held.wait_for_pending(), status, notes=f"request {status}")
    thread.join(10)
    assert isinstance(box["error"], PolicyDeniedError)
    assert box["error"].status == status


def test_no_decision_within_max_poll_time_raises_approval_timeout(held: FakeWarden) -> None:
    wardenpy.configure(
        api_key=wardenpy.get_config().api_key,
        api_url=held.url,
        max_poll_time=1.0,
        poll_interval=0.05,
    )
    tool = Refunds()
    with pytest.raises(ApprovalTimeoutError) as err:
        wardenpy.guard_tool("stripe.refund", tool)(150.0, "cus_abc")
    assert err.value.timeout == 1.0
    assert err.value.action_id in held.actions
    assert tool.runs == []


def test_waiting_still_works_when_the_server_ignores_the_wait_parameter(
    held: FakeWarden,
) -> None:
    held.ignore_wait = True
    thread, box = run_in_thread(wardenpy.guard_tool("stripe.refund", Refunds()), 1.0, "c")
    held.decide(held.wait_for_pending(), "approved")
    thread.join(10)
    assert box == {"result": "refunded 1.0"}


def test_async_mode_returns_pending_at_once_and_calls_on_approval(held: FakeWarden) -> None:
    tool = Refunds()
    events: list[WebhookEvent] = []
    done = threading.Event()

    def on_approval(event: WebhookEvent) -> None:
        tool(event.context["amount"], event.context["customer_id"])
        events.append(event)
        done.set()

    safe = wardenpy.guard_tool(
        "stripe.refund",
        tool,
        approval_mode="async",
        on_approval=on_approval,
        on_denial=lambda e: None,
    )
    pending = safe(150.0, customer_id="cus_abc")
    assert isinstance(pending, PendingApproval)
    assert tool.runs == []
    held.decide(pending.action_id, "approved", notes="verified")
    assert done.wait(10)
    (event,) = events
    assert (event.event_type, event.warden_type) == ("action_approved", "approval.approved")
    assert (event.approved_by, event.notes) == ("user_bob", "verified")
    assert tool.runs == [(150.0, "cus_abc")]


def test_async_mode_calls_on_denial_with_the_notes(held: FakeWarden) -> None:
    events: list[WebhookEvent] = []
    done = threading.Event()

    def on_denial(event: WebhookEvent) -> None:
        events.append(event)
        done.set()

    safe = wardenpy.guard_tool(
        "stripe.refund",
        Refunds(),
        approval_mode="async",
        on_approval=lambda e: None,
        on_denial=on_denial,
    )
    pending = safe(150.0, customer_id="cus_abc")
    held.decide(pending.action_id, "denied", notes="too much")
    assert done.wait(10)
    assert (events[0].event_type, events[0].notes) == ("action_denied", "too much")


def test_async_mode_claims_the_action_and_records_the_callbacks_outcome(
    held: FakeWarden,
) -> None:
    done = threading.Event()
    safe = wardenpy.guard_tool(
        "stripe.refund",
        Refunds(),
        approval_mode="async",
        on_approval=lambda e: done.set(),
        on_denial=lambda e: None,
    )
    pending = safe(150.0, customer_id="cus_abc")
    held.decide(pending.action_id, "approved")
    assert done.wait(10)
    assert held.wait_for_outcome(pending.action_id)["status"] == "success"
    assert held.actions[pending.action_id]["claimed_at"] is not None


def test_webhook_mode_returns_pending_without_polling(held: FakeWarden) -> None:
    safe = wardenpy.guard_tool(
        "stripe.refund", Refunds(), approval_mode="webhook", on_approval=print, on_denial=print
    )
    pending = safe(150.0, customer_id="cus_abc")
    assert pending == PendingApproval(pending.action_id, "stripe.refund")
    assert held.calls("GET", "/api/v1/actions/") == []
