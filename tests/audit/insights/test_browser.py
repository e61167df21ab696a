"""The overview in Chromium at 1280x800 and 390x844: both charts drawn by Chart.js, no console
error, no CSP violation, no sideways scrolling, and the charts drawn again after the live
panel is replaced.

With ``WARDEN_SCREENSHOTS=<dir>`` the test also saves ``overview-desktop.png`` and
``overview-phone.png`` there (how docs/screenshots/ was made)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone

from agents import services as agent_services
from audit.insights.rollup import overview_rollup
from tests.audit.insights.conftest import approval, checks, usage
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.live, pytest.mark.browser]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
CHARTS_DRAWN = """() => ["checks", "tokens"].every((name) => {
  const canvas = document.querySelector(`canvas[data-chart="${name}"]`);
  return canvas && window.Chart && window.Chart.getChart(canvas) !== undefined
    && canvas.width > 0 && canvas.height > 0;
})"""


def demo_data(org, alice) -> None:
    """A day of an organisation's agents at work (what the screenshots show)."""
    bots = [
        agent_services.agent_create(organization=org, actor=alice, name=name)
        for name in ("support-bot", "billing-bot", "ops-agent")
    ]
    now = timezone.now()
    actions = ["stripe.refund", "email.send", "crm.update", "invoice.send", "db.delete"]
    for hour in range(24):
        at = now - timedelta(hours=hour, minutes=5)
        for i, bot in enumerate(bots):
            volume = 6 + (hour * 7 + i * 5) % 17
            checks(bot, volume, action=actions[(hour + i) % 5], at=at)
            checks(bot, volume // 5, action="stripe.refund", decision="requires_approval", at=at)
            checks(
                bot, (hour + i) % 4, action="db.delete", decision="block", at=at, environment="test"
            )
    for i in range(12):
        approval(
            bots[i % 2],
            requested_at=now - timedelta(hours=i + 1),
            decided_after=timedelta(seconds=40 + 35 * i),
            reviewer="alice@example.com" if i % 3 else "bob@example.com",
            status="approved" if i % 4 else "denied",
        )
    approval(bots[0], requested_at=now - timedelta(minutes=18))
    approval(bots[1], requested_at=now - timedelta(minutes=4))
    for day in range(2):
        for model, cost in (("gpt-4o", "1.20"), ("claude-sonnet-4", "0.85"), ("local-llm", "0")):
            u = usage(bots[day], model, cost)
            type(u).objects.filter(pk=u.pk).update(created_at=now - timedelta(days=day))
    overview_rollup(now=now + timedelta(minutes=5))


@pytest.fixture
def browser(monkeypatch) -> Iterator:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_the_overview_draws_its_charts_without_errors_or_sideways_scrolling(
    browser, live_server, alice, org_a, size
):
    EmailAddress.objects.get_or_create(
        user=alice, email=alice.email, defaults={"verified": True, "primary": True}
    )
    demo_data(org_a, alice)
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(LISTEN)
    page = context.new_page()
    errors: list[str] = []
    # The browser's own request for /favicon.ico (the project has none) is not the page's.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "favicon.ico" not in (m.location or {}).get("url", "")
            else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=login]", alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.goto(f"{live_server.url}/")
    page.wait_for_function(CHARTS_DRAWN)

    assert page.evaluate("window.__csp") == []
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert "Pending now" in page.inner_text("#overview-panel")
    if os.environ.get("WARDEN_SCREENSHOTS"):
        target = Path(os.environ["WARDEN_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        page.locator("section.overview").screenshot(path=str(target / f"overview-{size}.png"))

    # The live update: htmx replaces the panel, and the charts are drawn again.
    page.evaluate("document.querySelector('canvas[data-chart=checks]').dataset.old = '1'")
    page.evaluate(
        "htmx.ajax('GET', document.getElementById('overview-panel').getAttribute('hx-get'),"
        " {target: '#overview-panel', swap: 'innerHTML'})"
    )
    page.wait_for_function("!document.querySelector('canvas[data-old]')")
    page.wait_for_function(CHARTS_DRAWN)
    assert page.evaluate("window.__csp") == []
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()
