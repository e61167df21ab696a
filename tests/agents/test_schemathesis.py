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

from agents import runtime
from tests.agents.conftest import add_rule
from tests.factories import plan

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
    """Something to find: a rule that holds refunds (checks of stripe.refund are held). On
    the Enterprise plan (no request rate limit): a longer hunt would otherwise get mostly
    429 answers."""
    organization = support_bot.organization
    organization.plan = plan("enterprise")
    organization.save(update_fields=["plan"])
    runtime.caches_clear()
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
                if case.cookies:
                    case.cookies.pop("sessionid", None)
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


# --- Real objects: the answers about them match the schema ------------------------------


def _call(schema: Any, operation_id: str, transport: dict[str, Any], **case: Any) -> Any:
    request = schema.find_operation_by_id(operation_id).Case(**case)
    response = request.call(**transport)
    request.validate_response(response, checks=CHECKS, **_validation(transport))
    assert 200 <= response.status_code < 300, (operation_id, response.status_code, response.text)
    return response.json() if response.text else None


def test_the_answers_about_real_objects_match_the_schema(
    api_schema, data, support_bot, client, alice, org_a
):
    from webhooks import services as webhook_services

    agent_key = {"headers": {"X-API-Key": data.live}}
    org_key = {"headers": {"X-API-Key": data.org}}
    client.force_login(alice)
    csrf = _get_new_csrf_string()
    session = {
        "headers": {"X-CSRFToken": csrf},
        "cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf},
    }
    bot = support_bot.public_id
    refund = {"action": "stripe.refund", "arguments": {"amount": 420}}

    held = _call(api_schema, "check", agent_key, body=refund)["action_id"]
    second = _call(api_schema, "check", agent_key, body=refund)["action_id"]
    third = _call(api_schema, "check", agent_key, body=refund)["action_id"]
    allowed = _call(api_schema, "check", agent_key, body={"action": "crm.read"})["action_id"]
    _call(api_schema, "action_get", agent_key, path_parameters={"action_id": held})
    _call(
        api_schema,
        "action_outcome",
        agent_key,
        path_parameters={"action_id": allowed},
        body={"status": "success"},
    )
    _call(api_schema, "arden_status", agent_key, path_parameters={"action_id": held})
    _call(
        api_schema,
        "arden_policy_check",
        agent_key,
        body={"tool_name": "stripe.refund", "kwargs": {"amount": 5}, "metadata": None},
    )
    _call(api_schema, "agentwarden_check", org_key, body={"agent_id": bot, "action": "crm.read"})
    _call(
        api_schema,
        "agentwarden_log",
        org_key,
        body={"agent_id": bot, "action": "crm.read", "status": "success", "context": {}},
    )
    usage = {"model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 5}
    _call(api_schema, "token_usage_create", agent_key, body=usage)
    _call(api_schema, "arden_token_usage", agent_key, body=usage)
    for group_by in ("model", "day", "session"):
        _call(api_schema, "token_usage_summary", agent_key, query={"group_by": group_by})

    _call(api_schema, "approvals_list", session, query={"status": "pending"})
    _call(api_schema, "approvals_list", org_key)
    _call(api_schema, "action_approve", session, path_parameters={"action_id": held}, body={})
    _call(api_schema, "action_claim", agent_key, path_parameters={"action_id": held}, body={})
    _call(api_schema, "action_cancel", agent_key, path_parameters={"action_id": second}, body={})
    _call(api_schema, "arden_deny", session, path_parameters={"action_id": third}, body={})

    _call(api_schema, "agents_list", session)
    _call(api_schema, "agents_get", session, path_parameters={"agent_id": bot})
    rules = _call(api_schema, "rules_list", session, path_parameters={"agent_id": bot})
    rule = rules["results"][0]["id"]
    _call(api_schema, "rules_get", session, path_parameters={"agent_id": bot, "rule_id": rule})
    _call(api_schema, "org_rules_list", session)
    keys = _call(api_schema, "keys_list", session)
    _call(api_schema, "keys_get", session, path_parameters={"key_id": keys["results"][0]["id"]})
    _call(api_schema, "keys_create", session, body={"kind": "org", "name": "ci"})
    _call(api_schema, "agents_policy_get", session, path_parameters={"agent_id": bot})
    _call(api_schema, "agents_policy_versions_list", session, path_parameters={"agent_id": bot})
    _call(
        api_schema,
        "agents_simulate",
        session,
        path_parameters={"agent_id": bot},
        body={"action": "stripe.refund", "arguments": {"amount": 1}},
    )
    _call(api_schema, "audit_checkpoints", session)

    endpoint = webhook_services.endpoint_create(
        organization=org_a, actor=alice, url="https://e.com/h"
    ).endpoint.public_id
    _call(api_schema, "webhooks_endpoints_list", session)
    _call(api_schema, "webhooks_endpoints_get", session, path_parameters={"endpoint_id": endpoint})
    delivery = _call(
        api_schema,
        "webhooks_endpoints_send_test",
        session,
        path_parameters={"endpoint_id": endpoint},
    )["id"]
    _call(
        api_schema,
        "webhooks_endpoints_deliveries",
        session,
        path_parameters={"endpoint_id": endpoint},
    )
    _call(api_schema, "webhooks_deliveries_get", session, path_parameters={"delivery_id": delivery})
    _call(api_schema, "mcp_servers_list", session)
