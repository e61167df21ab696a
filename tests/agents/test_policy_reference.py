"""docs/POLICY.md cannot drift from the code: every example policy in it is applied to an
agent and every call listed under it is checked through the HTTP API, and the error example
is what the API answers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from freezegun import freeze_time

from accounts.models import Organization
from agents import services
from tests.factories import plan

pytestmark = pytest.mark.django_db

POLICY_MD = Path(__file__).resolve().parents[2] / "docs" / "POLICY.md"
BLOCK_RE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
CHECK_RE = re.compile(
    r"(?P<action>\S+) (?P<arguments>\{.*?\})(?: (?P<context>\{.*\}))?"
    r"(?: @ (?P<at>\S+))?\s+-> (?P<decision>\w+)$"
)


@dataclass
class Example:
    policy: str
    checks: list[str]


def examples() -> list[Example]:
    blocks = BLOCK_RE.findall(POLICY_MD.read_text())
    found = []
    for index, (language, body) in enumerate(blocks):
        if language == "yaml" and body.startswith("agent:"):
            following = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
            assert following[0] == "checks", f"example {index} has no checks block after it"
            lines = [line.strip() for line in following[1].splitlines() if line.strip()]
            found.append(Example(body, lines))
    return found


def test_the_reference_has_examples() -> None:
    assert len(examples()) >= 4


def _check(client: Client, key: str, line: str) -> tuple[str, dict[str, Any]]:
    match = CHECK_RE.match(line)
    assert match is not None, f"unreadable checks line: {line!r}"
    body = {"action": match["action"], "arguments": json.loads(match["arguments"])}
    body.update(json.loads(match["context"] or "{}"))
    post = lambda: client.post(  # noqa: E731
        "/api/v1/check", data=json.dumps(body), content_type="application/json", HTTP_X_API_KEY=key
    )
    if match["at"]:
        with freeze_time(match["at"]):
            response = post()
    else:
        response = post()
    assert response.status_code == HTTPStatus.OK, (line, response.content)
    return match["decision"], response.json()


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.policy.split("\n", 1)[0])
def test_every_example_decides_as_the_reference_says(client, org_a, alice, example):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("business"))
    org_a.refresh_from_db()
    document = services.policy_document_parse(organization=org_a, text=example.policy, format=None)
    agent = services.policy_import(organization=org_a, document=document, actor=alice)
    _, key = services.api_key_create(
        organization=org_a, kind="agent", agent=agent, environment="live", actor=alice
    )
    for line in example.checks:
        expected, answer = _check(client, key, line)
        assert answer["decision"] == expected, (line, answer["reason"])


def test_the_error_example_is_what_the_api_answers(client, org_a, alice):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("business"))
    blocks = BLOCK_RE.findall(POLICY_MD.read_text())
    language = next(e.policy for e in examples() if "large or foreign refunds" in e.policy)
    documented = json.loads(next(body for kind, body in blocks if kind == "json"))
    agent = services.agent_create(organization=org_a, actor=alice, name="payments-bot")
    client.force_login(alice)
    broken = language.replace("op: ne, value: USD", "op: equals, value: USD")
    assert broken != language
    response = client.put(
        f"/api/v1/agents/{agent.public_id}/policy", data=broken, content_type="application/yaml"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    answer = response.json()
    for key, value in documented.items():
        assert answer[key] == value, key
