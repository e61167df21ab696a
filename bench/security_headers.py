"""CPU of the security headers per answer: no database, no HTTP server.

    .venv/bin/python bench/security_headers.py [--blocks 300]

1. The key-only hot path (wardenproject/middleware.py) runs Django's SecurityMiddleware
   around its view (HTTPS redirect, HSTS); before, it set three headers by hand. Both are
   timed on the same request and answer, interleaved block by block, for HTTP and HTTPS
   (HTTPS adds the HSTS header), with production settings (DEBUG off, HSTS one year).
2. The CSP middleware (django-csp, HTML answers only) on a JSON and on an HTML answer.

Each figure is the smallest per-call process CPU over the blocks: another process on the
machine can only add to a block's time, so the minimum is the least disturbed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-not-for-production",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "WARNING",
    }
)

import django  # noqa: E402

django.setup()

from django.http import HttpResponse  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from wardenproject.middleware import HtmlContentSecurityPolicyMiddleware  # noqa: E402


def smallest(calls: dict[str, Callable[[], object]], blocks: int, per_block: int = 500) -> dict:
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(blocks):
        for name, call in calls.items():
            started = time.process_time_ns()
            for _ in range(per_block):
                call()
            best[name] = min(best[name], (time.process_time_ns() - started) / per_block / 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=300)
    args = parser.parse_args()
    factory = RequestFactory()
    security = SecurityMiddleware(lambda request: None)

    for scheme in ("http", "https"):
        request = factory.post("/api/v1/check", secure=scheme == "https")

        def by_hand(request=request) -> None:
            response = HttpResponse(b"{}", content_type="application/json")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")

        def through_security(request=request) -> None:
            security.process_request(request)
            response = HttpResponse(b"{}", content_type="application/json")
            response = security.process_response(request, response)
            response.headers.setdefault("X-Frame-Options", "DENY")

        best = smallest({"by hand": by_hand, "SecurityMiddleware": through_security}, args.blocks)
        print(
            f"hot path, {scheme:5}: headers by hand {best['by hand']:.1f} µs, "
            f"through SecurityMiddleware {best['SecurityMiddleware']:.1f} µs per answer "
            f"(+{best['SecurityMiddleware'] - best['by hand']:.1f} µs)"
        )

    csp = HtmlContentSecurityPolicyMiddleware(lambda request: None)
    request = factory.get("/")

    def answer(content_type: str) -> Callable[[], object]:
        return lambda: HttpResponse(b"{}", content_type=content_type)

    def with_csp(content_type: str) -> Callable[[], object]:
        def call() -> None:
            csp.process_request(request)
            csp.process_response(request, HttpResponse(b"{}", content_type=content_type))

        return call

    best = smallest(
        {
            "json": answer("application/json"),
            "json+csp": with_csp("application/json"),
            "html": answer("text/html"),
            "html+csp": with_csp("text/html"),
        },
        args.blocks // 2,
    )
    print(
        f"CSP middleware: +{best['json+csp'] - best['json']:.1f} µs on a JSON answer, "
        f"+{best['html+csp'] - best['html']:.1f} µs on an HTML answer"
    )


if __name__ == "__main__":
    main()
