"""Schemathesis against the live OpenAPI schema, in process (the WSGI app, no server): every
operation, once with an API key and once with a logged-in session, for a bounded number of
generated requests each. No answer may be a server error, and every answer must be one the
schema documents (status, content type and body)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.middleware.csrf import _get_new_csrf_string
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
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
# Generated requests per operation, generation mode and way in: ~50 operations, a minute
# at most in all. WARDEN_SCHEMATHESIS_EXAMPLES raises it for a longer hunt by hand.
EXAMPLES = int(os.environ.get("WARDEN_SCHEMATHESIS_EXAMPLES", "5"))
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
GENERATED_CREDENTIALS = ("X-API-Key", "Authorization", "Cookie")


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


def run_every_operation(schema: Any, **transport: Any) -> tuple[Counter, list[str]]:
    """Each operation's generated requests (valid ones, then invalid ones), sent with
    ``transport`` (headers, cookies): the statuses answered, and one line per operation and
    mode that failed a check."""
    statuses: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in MODES:

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: Any) -> None:
                # Credentials are the test's: none made up from the security schemes.
                for name in GENERATED_CREDENTIALS:
                    case.headers.pop(name, None)
                response = case.call(**transport)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS, **_validation(transport))

            try:
                exercise()
            except (Exception, BaseExceptionGroup) as error:  # each failing operation
                failures.append(f"{operation.label} ({mode.value}): {str(error)[:1500]}")
    print(f"schemathesis: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    return statuses, failures


def _validation(transport: dict[str, Any]) -> dict[str, Any]:
    return {"headers": transport.get("headers")}


def test_the_api_answers_as_its_schema_says_with_an_api_key(api_schema, data):
    statuses, failures = run_every_operation(api_schema, headers={"X-API-Key": data.live})
    assert not failures, "\n\n".join(failures)
    assert statuses[HTTPStatus.OK] > 0 and statuses[HTTPStatus.BAD_REQUEST] > 0, statuses


def test_the_api_answers_as_its_schema_says_with_a_session(api_schema, data, client, alice):
    client.force_login(alice)
    csrf = _get_new_csrf_string()
    statuses, failures = run_every_operation(
        api_schema,
        headers={"X-CSRFToken": csrf},
        cookies={"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf},
    )
    assert not failures, "\n\n".join(failures)
    assert statuses[HTTPStatus.OK] > 0 and statuses[HTTPStatus.CREATED] > 0, statuses
