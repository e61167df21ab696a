from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from webhooks.models import Endpoint


def run(*args: str) -> str:
    out = StringIO()
    call_command("warden_webhook", *args, stdout=out)
    return out.getvalue()


def test_create_json_prints_id_and_secret(org_a):
    output = run(
        "create",
        "--org",
        org_a.name,
        "--url",
        "https://example.com/hook",
        "--format",
        "agentwarden",
        "--events",
        "approval.approved,approval.rejected",
        "--json",
    )
    payload = json.loads(output)
    assert set(payload) == {"id", "secret"}
    endpoint = Endpoint.objects.get(public_id=payload["id"])
    assert endpoint.format == "agentwarden"
    assert endpoint.events == ["approval.approved", "approval.rejected"]


def test_create_accepts_the_org_public_id(org_a):
    payload = json.loads(
        run("create", "--org", org_a.public_id, "--url", "https://e.com/", "--json")
    )
    assert payload["secret"].startswith("whsec_")


def test_list_and_rotate(org_a):
    created = json.loads(run("create", "--org", org_a.name, "--url", "https://e.com/", "--json"))
    listed = json.loads(run("list", "--org", org_a.name, "--json"))
    assert [e["id"] for e in listed] == [created["id"]]
    rotated = json.loads(run("rotate", "--org", org_a.name, created["id"], "--json"))
    assert rotated["secret"] != created["secret"]


def test_unknown_event_is_a_command_error(org_a):
    with pytest.raises(CommandError, match="Unknown event"):
        run("create", "--org", org_a.name, "--url", "https://e.com/", "--events", "nope")
