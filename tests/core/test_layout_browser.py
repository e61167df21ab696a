"""In Chromium at desktop (1280x800) and phone (390x844) sizes: the page never scrolls
sideways (even with a huge webhook body expanded), words never break mid-word, the phone
navigation collapses behind a Menu button, and the main pages have no serious or critical
axe-core violations."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from agents import services as agent_services
from agents.models import Agent, Rule
from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from tests import browser
from tests.approvals.conftest import request_create
from webhooks import services as webhook_services
from webhooks.models import Attempt, Delivery, Endpoint, Event

pytestmark = [pytest.mark.live, pytest.mark.browser]

SIZES = {"desktop": browser.DESKTOP, "phone": browser.PHONE}


@pytest.fixture(autouse=True)
def _async_unsafe_ok(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are
    # still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@dataclass
class World:
    org: str  # the organisation's public id
    agent: Agent
    rule: Rule
    pending: ApprovalRequest
    decided: ApprovalRequest
    endpoint: Endpoint
    delivery: Delivery


def long_body() -> str:
    """A delivery body like the one in the issue: one 60 KB line, with a 3,000-character
    token that has no place to break."""
    items = [{"sku": f"sku_{i}", "amount": i, "note": "a long line item " * 4} for i in range(300)]
    payload = {"data": {"arguments": {"items": items, "token": "x" * 3000}}}
    return json.dumps(payload, separators=(",", ":"))


@pytest.fixture
def world(org_a, alice) -> World:
    agent = agent_services.agent_create(organization=org_a, actor=alice, name="refund-bot")
    rule = agent_services.rule_create(
        organization=org_a,
        agent=agent,
        actor=alice,
        data={
            "name": "large refunds need a human",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "when": [
                {"field": "amount", "op": "gt", "value": 100},
                {"field": "currency", "op": "eq", "value": "usd"},
            ],
        },
    )
    pending = request_create(agent, arguments={"amount": 420, "customer": "cus_1"})
    decided = request_create(agent, arguments={"amount": 150, "note": "y" * 300})
    decided = approval_decide(
        request_or_action_id=decided, actor_user=alice, approve=True, notes="fine", source="web"
    )
    endpoint = webhook_services.endpoint_create(
        actor=alice,
        organization=org_a,
        url="https://hooks.example.com/warden/receiver",
        events=list(webhook_services.EVENT_TYPES),
    ).endpoint
    event = Event.objects.create(
        organization=org_a, event_type="log.pending_approval", data={"action_id": "act_1"}
    )
    delivery = Delivery.objects.create(
        event=event, endpoint=endpoint, status="failed", attempt_count=1, last_status_code=500
    )
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        request_url=endpoint.url,
        request_body=long_body(),
        response_status=500,
        response_body="z" * 5000,
        duration_ms=12,
    )
    return World(org_a.public_id, agent, rule, pending, decided, endpoint, delivery)


# --- The delivery log with a long body ------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_the_delivery_log_with_a_long_body_does_not_scroll_sideways(
    live_server, alice, world, size
):
    with browser.chromium(SIZES[size]) as page:
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/webhooks/{world.endpoint.public_id}/")
        browser.open_all_details(page)
        body = page.locator("pre.body").first
        assert body.is_visible()
        assert "\n" in body.inner_text()  # pretty-printed, not one line
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            f"{browser.sideways_overflow(page)} px too wide"
        )


@pytest.mark.parametrize("size", SIZES)
def test_the_event_catalogue_does_not_scroll_sideways(live_server, alice, org_a, size):
    with browser.chromium(SIZES[size]) as page:
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/webhooks/events/")
        browser.open_all_details(page)
        assert browser.sideways_overflow(page) == 0


# --- Layout of the other pages --------------------------------------------------------------


def layout_pages(world: World) -> list[str]:
    agent = world.agent.public_id
    return [
        "/",
        "/agents/",
        f"/agents/{agent}/",
        f"/agents/{agent}/rules/{world.rule.public_id}/",
        f"/agents/{agent}/simulate/",
        "/agents/org-keys/",
        "/agents/audit/",
        f"/agents/audit/{world.pending.action_id}/",
        "/approvals/",
        f"/approvals/{world.pending.action_id}/",
        f"/approvals/{world.decided.action_id}/",
        "/approvals/history/",
        "/webhooks/",
        "/webhooks/new/",
        f"/webhooks/{world.endpoint.public_id}/",
        "/webhooks/events/",
        "/mcp-servers/",
        f"/orgs/{world.org}/members/",
        f"/orgs/{world.org}/plan/",
    ]


def test_no_word_breaks_mid_word_at_desktop_width(live_server, alice, world):
    broken = {}
    with browser.chromium(browser.DESKTOP) as page:
        browser.log_in(page, live_server.url, alice)
        for path in layout_pages(world):
            browser.visit(page, f"{live_server.url}{path}")
            words = browser.words_broken_mid_word(page)
            if words:
                broken[path] = words
    assert broken == {}


@pytest.mark.parametrize("size", SIZES)
def test_no_main_page_scrolls_sideways(live_server, alice, world, size):
    wide = {}
    with browser.chromium(SIZES[size]) as page:
        browser.log_in(page, live_server.url, alice)
        for path in layout_pages(world):
            browser.visit(page, f"{live_server.url}{path}")
            overflow = browser.sideways_overflow(page)
            if overflow:
                wide[path] = overflow
    assert wide == {}


# --- The phone navigation -------------------------------------------------------------------


def test_the_phone_navigation_is_collapsed_behind_a_menu_button(live_server, alice, org_a):
    with browser.chromium(browser.PHONE) as page:
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/agents/")
        menu = page.get_by_role("button", name="Menu", exact=True)
        webhooks_link = page.locator("#site-nav").get_by_role("link", name="Webhooks")
        header = page.locator("header.topbar")
        assert menu.is_visible()
        assert menu.get_attribute("aria-expanded") == "false"
        assert not webhooks_link.is_visible()
        assert header.bounding_box()["height"] < 80  # it took ~200 px before

        menu.click()
        assert menu.get_attribute("aria-expanded") == "true"
        assert webhooks_link.is_visible()
        webhooks_link.click()
        page.wait_for_url("**/webhooks/")

        page.get_by_role("button", name="Menu").click()
        page.keyboard.press("Escape")
        assert page.get_by_role("button", name="Menu").get_attribute("aria-expanded") == "false"
        assert not page.locator("#site-nav").is_visible()


def test_the_desktop_navigation_shows_every_link_and_no_menu_button(live_server, alice, org_a):
    with browser.chromium(browser.DESKTOP) as page:
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/agents/")
        assert not page.locator(".menu-toggle").is_visible()
        for name in ("Dashboard", "Agents", "Approvals", "Webhooks"):
            assert page.locator("#site-nav").get_by_role("link", name=name).is_visible()


# --- Destructive buttons --------------------------------------------------------------------


def test_destructive_buttons_are_red(live_server, alice, world):
    with browser.chromium(browser.DESKTOP) as page:
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/webhooks/{world.endpoint.public_id}/")
        delete = page.get_by_role("button", name="Delete endpoint")
        plain = page.get_by_role("button", name="Rotate secret")
        colour = "(el) => getComputedStyle(el).color + ' ' + getComputedStyle(el).borderColor"
        assert delete.evaluate(colour) == "rgb(180, 35, 24) rgb(180, 35, 24)"  # --bad
        assert plain.evaluate(colour) != delete.evaluate(colour)


# --- The new key's copy button -------------------------------------------------------------


def test_the_copy_button_puts_the_new_key_on_the_clipboard(live_server, alice, world):
    with browser.chromium(browser.DESKTOP) as page:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/agents/{world.agent.public_id}/")
        page.locator("#keys form.filters button[type=submit]").click()
        page.wait_for_load_state()
        key = page.locator("#new-key").inner_text().strip()
        assert key.startswith("wdn_")
        page.get_by_role("button", name="Copy key").click()
        page.get_by_role("button", name="Copied").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == key


# --- Accessibility (axe-core) ---------------------------------------------------------------

# The main pages, as paths built from the test's data: add a page by adding a line.
AXE_PAGES: list[Callable[[World], str]] = [
    lambda w: "/",
    lambda w: "/agents/",
    lambda w: f"/agents/{w.agent.public_id}/",
    lambda w: f"/agents/{w.agent.public_id}/rules/{w.rule.public_id}/",
    lambda w: f"/agents/{w.agent.public_id}/simulate/",
    lambda w: "/agents/org-keys/",
    lambda w: "/agents/audit/",
    lambda w: f"/agents/audit/{w.pending.action_id}/",
    lambda w: "/approvals/",
    lambda w: "/approvals/history/",
    lambda w: f"/approvals/{w.pending.action_id}/",
    lambda w: f"/approvals/{w.decided.action_id}/",
    lambda w: "/webhooks/",
    lambda w: "/webhooks/new/",
    lambda w: f"/webhooks/{w.endpoint.public_id}/",
    lambda w: "/webhooks/events/",
    lambda w: "/mcp-servers/",
    lambda w: f"/orgs/{w.org}/members/",
    lambda w: f"/orgs/{w.org}/plan/",
    lambda w: "/insights/tokens/",
    lambda w: f"/orgs/{w.org}/groups/",
    lambda w: f"/integrations/slack/orgs/{w.org}/",
]
AXE_PUBLIC_PAGES = ["/accounts/login/", "/accounts/signup/", "/verify-email/resend/"]


@pytest.mark.parametrize("size", SIZES)
def test_the_main_pages_have_no_serious_or_critical_axe_violations(live_server, alice, world, size):
    paths = [build(world) for build in AXE_PAGES]
    with browser.chromium(SIZES[size]) as page:
        public = browser.accessibility_report(page, live_server.url, AXE_PUBLIC_PAGES)
        browser.log_in(page, live_server.url, alice)
        signed_in = browser.accessibility_report(page, live_server.url, paths)
    assert {**public, **signed_in} == {}


def test_the_axe_check_finds_a_real_violation(live_server, alice, org_a):
    """The checker itself works: an unlabelled field on a page is reported."""
    with browser.chromium(browser.DESKTOP) as page:
        browser.log_in(page, live_server.url, alice)
        browser.visit(page, f"{live_server.url}/agents/")
        page.evaluate(
            "document.querySelector('main').insertAdjacentHTML('beforeend', "
            "'<select id=unlabelled><option>a</option></select>')"
        )
        found = browser.axe_violations(page)
    assert "select-name" in {v["id"] for v in found}
