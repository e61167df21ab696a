"""Helpers for browser tests (Playwright with Debian's Chromium): launching, logging in,
layout measurements and the axe-core accessibility check.

axe-core is vendored for tests only (``tests/vendor/axe-core/``, version in its README) and
injected with ``page.evaluate(source)``: the DevTools protocol evaluates it in the page
without a ``<script>`` element, so the page's Content-Security-Policy stays as production
sends it (no ``bypass_csp`` context) and nothing is fetched from a CDN.

Adding a page to the accessibility check is one line: a path in the test's page list
(``tests/core/test_layout_browser.py``), or ``assert_accessible(page, url)`` anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

from allauth.account.models import EmailAddress

from tests.conftest import PASSWORD

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# What fails the check: axe's two worst impact levels.
BLOCKING_IMPACTS = ("serious", "critical")


@contextlib.contextmanager
def chromium(viewport: dict[str, int] = DESKTOP) -> Iterator[Any]:
    """A fresh page in headless Chromium at ``viewport``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_context(viewport=viewport).new_page()
        finally:
            browser.close()


def log_in(page: Any, base_url: str, user: Any) -> None:
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/accounts/login/" not in page.url, "the log-in failed"


def visit(page: Any, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == HTTPStatus.OK, url
    page.wait_for_load_state("networkidle")


def open_all_details(page: Any) -> None:
    """Expand every <details> (delivery attempts, bodies, samples): the widest the page gets."""
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")


def sideways_overflow(page: Any) -> int:
    """How many pixels wider than the window the page is (0: no sideways scrolling)."""
    return page.evaluate("Math.max(0, document.documentElement.scrollWidth - window.innerWidth)")


# Words (whole runs of letters, digits, _ and .; 4 to 24 characters, starting with a letter)
# that the layout split over two lines. A break after a hyphen is a normal line break, not a
# mid-word one. Code, preformatted text and URLs are left out: identifiers may break when
# they must, and longer runs are data (a token, a hash), not words.
BROKEN_WORDS = """
() => {
  const broken = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest("code, pre, .url, .break-any, script, style")) continue;
    const words = /[A-Za-z0-9_.]+/g;
    for (let m = words.exec(node.data); m; m = words.exec(node.data)) {
      if (m[0].length < 4 || m[0].length > 24 || !/^[A-Za-z]/.test(m[0])) continue;
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0)
        .map((r) => Math.round(r.top)));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}
"""


def words_broken_mid_word(page: Any) -> list[str]:
    return page.evaluate(BROKEN_WORDS)


@cache
def _axe_source() -> str:
    return AXE_JS.read_text()


def axe_violations(page: Any, *, impacts: tuple[str, ...] = BLOCKING_IMPACTS) -> list[dict]:
    """axe-core's violations on the current page at ``impacts`` levels, one dict per rule:
    ``{"id", "impact", "help", "targets"}``."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [" ".join(map(str, n["target"])) for n in v["nodes"]][:5],
        }
        for v in results["violations"]
        if v["impact"] in impacts
    ]


def accessibility_report(page: Any, base_url: str, paths: list[str]) -> dict[str, list[dict]]:
    """Visit each path and return the serious/critical violations of those that have any."""
    report = {}
    for path in paths:
        visit(page, f"{base_url}{path}")
        found = axe_violations(page)
        if found:
            report[path] = found
    return report


def assert_accessible(page: Any, url: str) -> None:
    visit(page, url)
    found = axe_violations(page)
    assert found == [], f"{url}: {found}"
