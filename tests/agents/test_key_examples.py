"""A new key is shown with a copy button and examples that work as pasted."""

from __future__ import annotations

import shlex
from http import HTTPStatus
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from agents.key_examples import key_examples

pytestmark = pytest.mark.django_db


def replay_curl(client, text: str):
    """Send the request a ``curl`` example describes through the test client."""
    words = shlex.split(text.replace("\\\n", " "))
    assert words[0] == "curl"
    method = words[words.index("-X") + 1]
    url = next(w for w in words if w.startswith("http://testserver/"))
    headers = {}
    for i, word in enumerate(words):
        if word == "-H":
            name, value = words[i + 1].split(": ", 1)
            headers[name] = value
    body = words[words.index("-d") + 1] if "-d" in words else None
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return client.generic(
        method,
        path,
        data=body or "",
        content_type=headers.pop("Content-Type", "application/octet-stream"),
        headers=headers,
    )


def examples_of(response) -> dict[str, str]:
    return {e.slug: e.text for e in response.context["examples"]}


def test_a_new_agent_key_comes_with_a_copy_button_and_a_curl_that_works(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(
        reverse("agents:key_create", args=[support_bot.public_id]),
        {"environment": "test", "name": "laptop"},
    )
    page = response.content.decode()
    raw = response.context["raw_key"]
    assert 'id="new-key"' in page and 'data-copy="new-key"' in page
    examples = examples_of(response)
    assert raw in examples["example-curl"]
    answer = replay_curl(client, examples["example-curl"])
    assert answer.status_code == HTTPStatus.OK, answer.content
    assert answer.json()["decision"] in {"allow", "block", "requires_approval"}


def test_a_new_agent_key_comes_with_wardenpy_and_ardenpy_snippets(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(
        reverse("agents:key_create", args=[support_bot.public_id]),
        {"environment": "test", "name": "laptop"},
    )
    examples = examples_of(response)
    raw = response.context["raw_key"]
    for slug in ("example-wardenpy", "example-ardenpy"):
        assert f'api_key="{raw}"' in examples[slug]
        assert 'api_url="http://testserver"' in examples[slug]
        compile(examples[slug], slug, "exec")


def test_a_new_organisation_key_example_names_an_agent_and_works(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(reverse("agents:org_keys"), {"kind": "org", "name": "ci"})
    examples = examples_of(response)
    assert '"agent": "support-bot"' in examples["example-curl"]
    assert "AgentWarden(" in examples["example-agentwarden"]
    compile(examples["example-agentwarden"], "agentwarden", "exec")
    answer = replay_curl(client, examples["example-curl"])
    assert answer.status_code == HTTPStatus.OK, answer.content


def test_a_new_approver_key_example_lists_the_pending_requests(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(reverse("agents:org_keys"), {"kind": "approver", "name": "phone"})
    examples = examples_of(response)
    client.logout()  # the key alone, not the session
    answer = replay_curl(client, examples["example-curl"])
    assert answer.status_code == HTTPStatus.OK, answer.content
    assert "results" in answer.json()


def test_the_examples_quote_a_url_with_a_query_for_the_shell():
    (curl, *_rest) = key_examples(kind="approver", key="wdn_apv_x", base_url="http://h:1/")
    assert "'http://h:1/api/v1/approvals?status=pending'" in curl.text
