from __future__ import annotations

import io
from http import HTTPStatus

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_schema_describes_the_check_endpoint(client):
    response = client.get("/api/schema/")
    assert response.status_code == HTTPStatus.OK
    schema = yaml.safe_load(response.content)
    assert "/api/v1/check" in schema["paths"]
    assert "/api/v1/agents/{agent_id}/policy" in schema["paths"]


def test_the_docs_page_loads_from_local_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == HTTPStatus.OK
    assert b"cdn." not in response.content
    assert b"/static/drf_spectacular_sidecar/" in response.content


def _schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == HTTPStatus.OK
    return yaml.safe_load(response.content)


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_the_schema_generates_with_no_warning_and_validates():
    # --fail-on-warn raises on any warning or error of the generator ("unable to guess
    # serializer", an authenticator without a scheme, colliding operation ids...).
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def test_the_schema_declares_the_api_key_and_bearer_schemes(client):
    schemes = _schema(client)["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["type"] == "http"
    assert schemes["Bearer"]["scheme"] == "bearer"


def test_the_check_endpoint_takes_an_api_key_or_a_bearer_token_only(client):
    check = _schema(client)["paths"]["/api/v1/check"]["post"]
    assert check["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert check["requestBody"]["content"]["application/json"]["schema"]


def test_the_configuration_endpoints_take_a_key_or_a_session(client):
    agents = _schema(client)["paths"]["/api/v1/agents"]["get"]
    assert {"ApiKey": []} in agents["security"]
    assert {"cookieAuth": []} in agents["security"]


@pytest.mark.parametrize(
    ("path", "method", "tag"),
    [
        ("/policy/check", "post", "Arden SDK (compatible)"),
        ("/status/{action_id}", "get", "Arden SDK (compatible)"),
        ("/approve/{action_id}", "post", "Arden SDK (compatible)"),
        ("/deny/{action_id}", "post", "Arden SDK (compatible)"),
        ("/token-usage", "post", "Arden SDK (compatible)"),
        ("/sdk/check", "post", "AgentWarden SDK (compatible)"),
        ("/sdk/log", "post", "AgentWarden SDK (compatible)"),
    ],
)
def test_the_compatible_endpoints_are_documented_under_their_own_tag(client, path, method, tag):
    operation = _schema(client)["paths"][path][method]
    assert operation["tags"] == [tag]


@pytest.mark.parametrize(
    ("path", "component"),
    [
        ("/api/v1/agents", "AgentList"),
        ("/api/v1/rules", "RuleList"),
        ("/api/v1/agents/{agent_id}/rules", "RuleList"),
        ("/api/v1/keys", "ApiKeyList"),
        ("/api/v1/approvals", "ApprovalList"),
        ("/api/v1/webhooks/endpoints", "EndpointList"),
        ("/api/v1/webhooks/endpoints/{endpoint_id}/deliveries", "DeliveryList"),
        ("/api/v1/mcp/servers", "McpServerList"),
    ],
)
def test_list_endpoints_are_documented_with_their_results_envelope(client, path, component):
    schema = _schema(client)
    answer = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": f"#/components/schemas/{component}"}
    envelope = schema["components"]["schemas"][component]
    assert envelope["type"] == "object"
    assert envelope["properties"]["results"]["type"] == "array"


def test_every_operation_has_a_response_schema_and_writes_have_a_request_schema(client):
    missing = []
    for path, method, operation in _operations(_schema(client)):
        successes = {
            code: answer for code, answer in operation["responses"].items() if code[0] == "2"
        }
        assert successes, f"{method} {path} documents no success"
        for code, answer in successes.items():
            if code != "204" and not answer.get("content"):
                missing.append(f"{method} {path} {code}: no body")
        if "400" in operation["responses"] and method in ("post", "put", "patch"):
            bodyless = operation["operationId"].endswith(
                ("_rotate_secret", "_send_test", "_resend", "keys_revoke", "grant_revoke")
            )
            if not bodyless and "requestBody" not in operation:
                missing.append(f"{method} {path}: no request body")
    assert missing == []
