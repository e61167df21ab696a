"""HTML pages carry a Content-Security-Policy that allows no inline script, and break none.

The browser tests load every main page (the product's, the Django admin's and the API docs)
in Chromium and fail on any ``securitypolicyviolation`` event or CSP console error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress

from agents import services as agent_services
from tests.approvals.conftest import request_create
from tests.conftest import PASSWORD
from webhooks import services as webhook_services

ROOT = Path(__file__).resolve().parents[2]


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/api/docs/"])
def test_an_html_page_has_a_csp_without_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == HTTPStatus.OK
    directives = policy(response)
    assert directives["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


def test_a_signed_in_page_has_the_csp(client, alice, org_a):
    client.force_login(alice)
    response = client.get("/approvals/")
    assert response.status_code == HTTPStatus.OK
    assert "'unsafe-inline'" not in policy(response)["script-src"]


@pytest.mark.django_db
def test_json_answers_carry_no_csp(client):
    response = client.get("/healthz")
    assert response["Content-Type"].startswith("application/json")
    assert "Content-Security-Policy" not in response


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]*\sstyle\s*=", re.I)


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(ROOT) for p in (ROOT / "templates").rglob("*.html"))
)
def test_no_template_has_inline_script_handlers_or_styles(template):
    text = (ROOT / template).read_text()
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to static/"
    assert not EVENT_HANDLER.search(text), "inline event handler: use addEventListener"
    assert not STYLE_ATTRIBUTE.search(text), "style attribute: use a class in static/"
    assert "<style" not in text, "inline <style>: move it to static/"


# --- in a real browser -------------------------------------------------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Collects what the browser refuses, from before any page script runs.
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def browser(monkeypatch) -> Iterator:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        context = chromium.new_context()
        context.add_init_script(LISTEN)
        page = context.new_page()
        console: list[str] = []
        page.on(
            "console",
            lambda m: console.append(m.text) if "Content Security Policy" in m.text else None,
        )
        yield page, console
        chromium.close()


def visit(page, console: list[str], url: str, *, ready: str = "body") -> None:
    response = page.goto(url)
    assert response is not None and response.status == HTTPStatus.OK, url
    page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__csp") == [], url
    assert console == [], url


@pytest.fixture
def staff_alice(alice):
    alice.is_staff = alice.is_superuser = True
    alice.save(update_fields=["is_staff", "is_superuser"])
    EmailAddress.objects.get_or_create(
        user=alice, email=alice.email, defaults={"verified": True, "primary": True}
    )
    return alice


@pytest.mark.live
@pytest.mark.browser
def test_the_main_pages_load_in_a_browser_without_a_csp_violation(
    browser, live_server, staff_alice, org_a
):
    page, console = browser
    from agents.models import Agent

    agent = Agent.objects.create(organization=org_a, name="refund-bot")
    pending = request_create(agent)
    endpoint = webhook_services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/h"
    ).endpoint
    shadow = agent_services.rule_create(
        organization=org_a,
        agent=agent,
        actor=None,
        data={"name": "maybe", "action": "a.b", "effect": "block", "mode": "shadow"},
    )
    base = live_server.url

    visit(page, console, f"{base}/accounts/login/")
    visit(page, console, f"{base}/accounts/signup/")
    visit(page, console, f"{base}/verify-email/resend/")
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", staff_alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    org = org_a.public_id
    for path in [
        "/",
        "/approvals/",
        "/approvals/history/",
        "/agents/",
        f"/agents/{agent.public_id}/",
        f"/agents/{agent.public_id}/simulate/",
        f"/agents/{agent.public_id}/rules/{shadow.public_id}/",
        "/agents/org-keys/",
        "/agents/audit/",
        f"/agents/audit/{pending.action_id}/",
        "/webhooks/",
        "/webhooks/new/",
        "/webhooks/events/",
        f"/webhooks/{endpoint.public_id}/",
        f"/orgs/{org}/members/",
        f"/orgs/{org}/plan/",
        f"/orgs/{org}/settings/",
        "/profile/",
        "/admin/",
        "/admin/approvals/approvalrequest/",
        f"/admin/approvals/approvalrequest/{pending.pk}/change/",
        "/admin/webhooks/endpoint/",
        f"/admin/webhooks/endpoint/{endpoint.pk}/change/",
        "/admin/accounts/user/add/",
    ]:
        visit(page, console, f"{base}{path}")

    # The page scripts (now static files) still run: the countdown fills in the time left.
    visit(page, console, f"{base}/approvals/{pending.action_id}/")
    page.wait_for_function(
        "document.querySelector('[data-expires]').textContent.trim().endsWith('s')"
    )
    # Swagger UI renders the schema under the policy.
    visit(page, console, f"{base}/api/docs/", ready=".swagger-ui .info .title")
    assert "Warden API" in page.inner_text(".swagger-ui .info .title")
