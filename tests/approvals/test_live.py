"""Against a live server: real HTTP, real threads, the real ardenpy client, and a browser."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http import HTTPStatus

import ardenpy
import pytest
import requests
from allauth.account.models import EmailAddress
from django.utils import timezone

from agents import services as agent_services
from approvals.models import ApprovalRequest
from approvals.services import approval_expire_overdue
from tests.approvals.conftest import key_create, request_create
from tests.conftest import PASSWORD

pytestmark = pytest.mark.live


def _decide_concurrently(url: str, calls: list[tuple[str, str]]) -> list[requests.Response]:
    """POST every (key, verb) at once, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    responses: list[requests.Response] = [None] * len(calls)  # type: ignore[list-item]

    def call(n: int) -> None:
        key, verb = calls[n]
        barrier.wait()
        responses[n] = requests.post(
            f"{url}/{verb}", json={"notes": f"call {n}"}, headers={"X-API-Key": key}, timeout=30
        )

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.postgres
def test_twenty_concurrent_approve_and_deny_calls_give_one_200_and_409s(
    live_server, org_a, agent_a
):
    request = request_create(agent_a)
    keys = [key_create(org_a, "approver").raw for _ in range(20)]
    calls = [(key, "approve" if n % 2 == 0 else "deny") for n, key in enumerate(keys)]
    responses = _decide_concurrently(f"{live_server.url}/api/v1/actions/{request.action_id}", calls)
    codes = sorted(r.status_code for r in responses)
    request.refresh_from_db()
    assert codes == [HTTPStatus.OK] + [HTTPStatus.CONFLICT] * 19
    assert {r.json()["status"] for r in responses if r.status_code == 409} == {request.status}
    assert request.votes.count() == 1


@pytest.mark.postgres
def test_the_http_long_poll_returns_when_the_request_is_decided(live_server, keys, pending):
    result: dict = {}

    def wait() -> None:
        result["response"] = requests.get(
            f"{live_server.url}/api/v1/actions/{pending.action_id}",
            params={"wait": 50},
            headers={"X-API-Key": keys["agent"].raw},
            timeout=70,
        )

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(0.5)  # the long-poll is holding
    assert waiter.is_alive()
    decided = requests.post(
        f"{live_server.url}/api/v1/actions/{pending.action_id}/approve",
        json={},
        headers={"X-API-Key": keys["approver"].raw},
        timeout=10,
    )
    assert decided.status_code == HTTPStatus.OK
    waiter.join(25)
    assert not waiter.is_alive()  # answered long before its 50 s wait
    assert result["response"].json()["status"] == "approved"


def test_arden_reads_an_expired_request_as_denied_with_the_reason(live_server, keys, pending):
    ApprovalRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    approval_expire_overdue()
    ardenpy.configure(api_key=keys["agent"].raw, api_url=live_server.url, retry_attempts=1)
    status = ardenpy.ArdenClient().get_action_status(pending.action_id)
    assert status.status.value == "denied"
    assert "expired" in status.message


def test_arden_approve_from_the_sdk_decides_the_request(live_server, keys, pending):
    ardenpy.configure(api_key=keys["approver"].raw, api_url=live_server.url, retry_attempts=1)
    assert ardenpy.ArdenClient().approve_action(pending.action_id, message="sdk says yes")
    pending.refresh_from_db()
    assert pending.status == "approved"
    assert pending.notes == "sdk says yes"


# --- the browser: a reviewer decides while a real ardenpy client waits ---------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page(monkeypatch) -> Iterator:
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the
    # test itself are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 375, "height": 740})
        yield context.new_page()
        browser.close()


@pytest.fixture
def guarded_refund(live_server, org_a, agent_a, alice):
    """A refund tool wrapped by the real ardenpy client; refunds over 100 need approval."""
    agent_services.rule_create(
        organization=org_a,
        agent=agent_a,
        data={
            "name": "refund limit",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "max_amount": 100,
        },
        actor=alice,
    )
    _key, raw = agent_services.api_key_create(
        organization=org_a, kind="agent", agent=agent_a, environment="test", actor=alice
    )
    ardenpy.configure(
        api_key=raw,
        api_url=live_server.url,
        poll_interval=0.2,
        max_poll_time=120,
        retry_attempts=1,
    )
    ran: list[float] = []

    def issue_refund(amount: float, customer_id: str) -> str:
        ran.append(amount)
        return f"refunded {amount} to {customer_id}"

    yield ardenpy.guard_tool("stripe.refund", issue_refund), ran
    ardenpy.clear_session()


def _call_in_thread(tool, *args, **kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = tool(*args, **kwargs)
        except Exception as error:  # the test inspects it
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _pending_action_id() -> str:
    import time

    for _ in range(300):
        request = ApprovalRequest.objects.filter(status="pending").first()
        if request:
            return request.action_id
        time.sleep(0.05)
    raise AssertionError("no approval request was created")


def _log_in(page, live_server, user) -> None:
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


@pytest.mark.browser
def test_ardenpy_waits_until_a_reviewer_clicks_approve_then_runs_the_tool(
    browser_page, live_server, guarded_refund, bob
):
    tool, ran = guarded_refund
    thread, outcome = _call_in_thread(tool, 150.0, customer_id="cus_9")
    action_id = _pending_action_id()
    thread.join(1.0)
    assert thread.is_alive() and ran == []  # the agent is blocked on the decision
    page = browser_page
    _log_in(page, live_server, bob)
    page.goto(f"{live_server.url}/approvals/")
    page.click(f"[data-action-id='{action_id}'] a")
    assert page.locator("table.arguments").inner_text().count("150") == 1
    page.fill("textarea[name=notes]", "customer verified")
    page.get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_load_state()
    thread.join(30)
    assert not thread.is_alive()
    assert outcome == {"result": "refunded 150.0 to cus_9"}
    assert ran == [150.0]
    assert page.locator("#approval-status").inner_text() == "Approved"


@pytest.mark.browser
def test_a_reviewer_rejecting_in_the_browser_raises_policy_denied_in_the_agent(
    browser_page, live_server, guarded_refund, alice
):
    tool, ran = guarded_refund
    thread, outcome = _call_in_thread(tool, 500.0, customer_id="cus_9")
    action_id = _pending_action_id()
    page = browser_page
    _log_in(page, live_server, alice)
    page.goto(f"{live_server.url}/approvals/{action_id}/")
    page.get_by_role("button", name="Reject", exact=True).click()
    page.wait_for_load_state()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), ardenpy.PolicyDeniedError)
    assert ran == []


@pytest.mark.browser
def test_the_queue_page_shows_a_new_request_without_a_reload(
    browser_page, live_server, bob, agent_a
):
    page = browser_page
    _log_in(page, live_server, bob)
    page.goto(f"{live_server.url}/approvals/")
    assert page.locator("#pending-count").inner_text() == "0"
    request = request_create(agent_a)
    page.wait_for_selector(f"[data-action-id='{request.action_id}']", timeout=15_000)
    assert page.locator("#pending-count").inner_text() == "1"
