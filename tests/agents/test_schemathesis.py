"""Schemathesis against the live OpenAPI schema, in process (the WSGI app, no server): every
operation, once with an API key and once with a logged-in session, for a bounded number of
generated requests each. No answer may be a server error, and every answer must be one the
schema documents (status, content type and body)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.middleware.csrf import _get_new_csrf_string
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.agents.conftest import add_rule

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Generated requests per operation and mode: ~50 operations, two modes, a minute at most.
EXAMPLES = 8


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """The project's WSGI app, sharing the test's database transaction: requests must not
    close the connection at their start and end (as Django's test client arranges too)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app: Any) -> Any:
    return schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)


@pytest.fixture
def data(support_bot, keys) -> Any:
    """Something to find: a rule that holds refunds, and one held call."""
    add_rule(
        support_bot,
        name="refunds need approval",
        action="stripe.refund",
        effect="requires_approval",
    )
    return keys


def run_every_operation(schema: Any, **transport: Any) -> tuple[int, list[str]]:
    """Each operation's generated requests, sent with ``transport`` (headers, cookies); the
    number of requests sent and one line per operation that failed a check."""
    sent = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(checks=CHECKS, **transport)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as error:  # each failing operation, not the first
            failures.append(f"{operation.label}: {str(error)[:1500]}")
    return sent, failures


def test_the_api_answers_as_its_schema_says_with_an_api_key(api_schema, data):
    sent, failures = run_every_operation(api_schema, headers={"X-API-Key": data.live})
    assert not failures, "\n\n".join(failures)
    assert sent > 200


def test_the_api_answers_as_its_schema_says_with_a_session(api_schema, data, client, alice):
    client.force_login(alice)
    csrf = _get_new_csrf_string()
    sent, failures = run_every_operation(
        api_schema,
        headers={"X-CSRFToken": csrf},
        cookies={"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf},
    )
    assert not failures, "\n\n".join(failures)
    assert sent > 200
