"""The API docs page in a real browser: "Authorize" takes an API key, and "Try it out" on
``POST /api/v1/check`` sends it and shows the decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http import HTTPStatus

import pytest

from tests.core.test_csp import CHROMIUM_ARGS

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture
def page(monkeypatch) -> Iterator:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium.new_context().new_page()
        chromium.close()


def test_try_it_out_on_the_check_endpoint_sends_the_authorized_api_key(page, live_server, keys):
    sent: list[dict[str, str]] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.headers) if request.url.endswith("/api/v1/check") else None
        ),
    )
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")

    page.click(".swagger-ui .auth-wrapper button.authorize")
    scheme = page.locator(".auth-container").filter(has_text="X-API-Key")
    scheme.locator("input").fill(keys.live)
    scheme.locator("button.authorize").click()
    page.click("button.btn-done")

    operation = page.locator("#operations-check-check")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("textarea.body-param__text").fill(
        json.dumps({"action": "stripe.refund", "arguments": {"amount": 5}})
    )
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tr.response td.response-col_status").first
    status.wait_for()

    assert status.inner_text().strip() == str(HTTPStatus.OK.value)
    assert sent and sent[-1].get("x-api-key") == keys.live
    answer = operation.locator(
        ".live-responses-table tr.response .response-col_description pre"
    ).first
    assert json.loads(answer.inner_text())["decision"] == "allow"
