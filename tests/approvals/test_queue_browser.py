"""The queue and the approval page in Chromium: filters and a bulk approval, the buttons
that give way when someone else decides, the keyboard shortcuts, the live pending count,
and the queue at desktop and phone sizes (which also makes docs/screenshots/queue-*.png
when WARDEN_SCREENSHOTS_DIR is set)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import expect

from agents.models import Agent
from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from tests.approvals.conftest import request_create
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.live, pytest.mark.browser]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000


@pytest.fixture
def chromium(monkeypatch) -> Iterator:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    return chromium.new_context(viewport=DESKTOP).new_page()


def log_in(page, base: str, user) -> None:
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def seed_queue(agent: Agent) -> list[ApprovalRequest]:
    """A few pending calls with arguments, as a reviewer would meet them."""
    mailer = Agent.objects.create(organization=agent.organization, name="support-mailer")
    return [
        request_create(
            agent, arguments={"amount": 420, "currency": "eur", "customer_id": "cus_8841"}
        ),
        request_create(agent, arguments={"customer_id": "cus_1207", "reason": "duplicate"}),
        request_create(
            agent,
            arguments={"amount": 1250.5, "currency": "usd", "customer_id": "cus_0042"},
            environment="live",
        ),
        request_create(
            mailer,
            action="email.send",
            arguments={
                "to": "all-customers@example.com",
                "subject": "Your account will be closed unless you act within 24 hours",
            },
        ),
    ]


def test_the_queue_filters_by_amount_then_approves_two_requests_with_one_note(
    page, live_server, bob, agent_a
):
    with_amount, missing, live, _mail = seed_queue(agent_a)
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/approvals/")
    first = page.locator(".queue-item").first
    assert first.get_attribute("data-action-id") == with_amount.action_id  # oldest first
    assert "amount 420" in first.inner_text()
    assert "amount missing" in page.locator(f"[data-action-id='{missing.action_id}']").inner_text()

    page.get_by_text("Filter and sort").click()
    page.fill("#id_amount_min", "1000")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert "amount_min=1000" in page.url
    assert [i.get_attribute("data-action-id") for i in page.locator(".queue-item").all()] == [
        live.action_id
    ]

    page.goto(f"{live_server.url}/approvals/?action=stripe.refund")
    page.get_by_label(f"Select stripe.refund of refund-bot ({with_amount.action_id})").check()
    page.get_by_label(f"Select stripe.refund of refund-bot ({missing.action_id})").check()
    assert page.locator("#selected-count").inner_text() == "2"
    assert page.locator("#bulk-paused").is_visible()
    page.fill("#bulk-notes", "checked with finance")
    page.get_by_role("button", name="Approve selected").click()
    page.wait_for_load_state()
    messages = page.locator(".messages").inner_text()
    assert f"({with_amount.action_id}): approved." in messages
    assert f"({missing.action_id}): approved." in messages
    assert "action=stripe.refund" in page.url  # back to the same filtered queue
    for request in (with_amount, missing):
        request.refresh_from_db()
        assert (request.status, request.notes) == ("approved", "checked with finance")
    live.refresh_from_db()
    assert live.status == "pending"


def test_the_buttons_give_way_to_who_decided_when_someone_else_decides(
    page, live_server, alice, bob, pending
):
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/approvals/{pending.action_id}/")
    assert page.get_by_role("button", name="Approve", exact=True).is_visible()
    page.fill("textarea[name=notes]", "looking into it")
    approval_decide(request_or_action_id=pending, actor_user=alice, approve=True)
    page.wait_for_selector("#decide.decided-note", timeout=WAIT_MS)
    note = page.locator("#decide").inner_text()
    assert "Approved by alice@example.com at" in note
    assert page.get_by_role("button", name="Approve", exact=True).count() == 0
    assert page.get_by_role("button", name="Reject", exact=True).count() == 0
    assert page.locator("#approval-status").inner_text() == "Approved"


def test_a_approves_from_the_keyboard_but_not_while_typing_the_note(
    page, live_server, bob, pending
):
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/approvals/{pending.action_id}/")
    assert page.locator("#shortcut-hint").is_visible()
    page.click("textarea[name=notes]")
    page.keyboard.type("a ok")
    assert page.input_value("textarea[name=notes]") == "a ok"
    page.locator("h1").click()  # leave the note field
    with page.expect_navigation():
        page.keyboard.press("a")
    assert page.locator("#approval-status").inner_text() == "Approved"
    pending.refresh_from_db()
    assert (pending.status, pending.notes, pending.decided_by) == ("approved", "a ok", bob)


def test_j_and_k_move_between_pending_requests(page, live_server, bob, make_request):
    first, second = make_request(), make_request()
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/approvals/{first.action_id}/")
    with page.expect_navigation():
        page.keyboard.press("j")
    assert page.url.endswith(f"/approvals/{second.action_id}/")
    with page.expect_navigation():
        page.keyboard.press("k")
    assert page.url.endswith(f"/approvals/{first.action_id}/")


def test_the_pending_count_in_the_title_and_navigation_follows_new_requests(
    page, live_server, bob, pending, agent_a
):
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/approvals/")
    assert page.title() == "(1) Approvals · Warden"
    request_create(agent_a)
    expect(page).to_have_title("(2) Approvals · Warden", timeout=WAIT_MS)
    assert page.locator("#nav-pending-count").get_attribute("data-count") == "2"


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_queue_fits_the_screen_at_desktop_and_phone_sizes(
    chromium, live_server, bob, agent_a, tmp_path, name, viewport
):
    seed_queue(agent_a)
    page = chromium.new_context(viewport=viewport).new_page()
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/approvals/")
    expect(page.locator("[data-expires]").first).to_have_text(re.compile(r"\d+s$"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    out = Path(os.environ.get("WARDEN_SCREENSHOTS_DIR") or tmp_path)
    page.screenshot(path=str(out / f"queue-{name}.png"), full_page=False)
    assert (out / f"queue-{name}.png").stat().st_size > 0


def test_on_a_phone_the_collapsed_menu_button_carries_the_pending_count(
    chromium, live_server, bob, pending, agent_a
):
    page = chromium.new_context(viewport=PHONE).new_page()
    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/agents/")
    toggle = page.locator(".menu-toggle")
    expect(toggle).to_be_visible()
    expect(page.locator("#nav-pending-count")).to_be_hidden()  # inside the collapsed menu
    expect(page.locator("#menu-pending-count")).to_have_text("1")
    expect(page.locator("#menu-pending-count")).to_be_visible()
    request_create(agent_a)
    expect(page.locator("#menu-pending-count")).to_have_text("2", timeout=WAIT_MS)
    # The badge is aria-hidden: the button's accessible name stays "Menu" (the count is read
    # out on the Approvals link inside the menu).
    expect(page.get_by_role("button", name="Menu", exact=True)).to_be_visible()
