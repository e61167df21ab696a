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


def test_reencrypt_moves_every_stored_secret_to_the_current_key(settings, org_a, org_c):
    from webhooks.services import endpoint_signing_secrets

    settings.SECRET_KEY = "key-of-last-year"
    first = json.loads(run("create", "--org", org_a.name, "--url", "https://e.com/", "--json"))
    rotated = json.loads(run("rotate", "--org", org_a.name, first["id"], "--json"))
    other = json.loads(run("create", "--org", org_c.name, "--url", "https://e.com/", "--json"))
    settings.SECRET_KEY = "key-of-today"
    settings.SECRET_KEY_FALLBACKS = ["key-of-last-year"]

    output = run("reencrypt")

    assert "3 secrets of 2 endpoints" in output
    settings.SECRET_KEY_FALLBACKS = []
    assert endpoint_signing_secrets(Endpoint.objects.get(public_id=first["id"])) == [
        rotated["secret"],
        first["secret"],
    ]
    assert endpoint_signing_secrets(Endpoint.objects.get(public_id=other["id"])) == [
        other["secret"]
    ]


def test_reencrypt_names_the_endpoints_whose_secret_no_key_can_read(settings, org_a):
    created = json.loads(run("create", "--org", org_a.name, "--url", "https://e.com/", "--json"))
    settings.SECRET_KEY = "a-key-that-never-saw-it"
    with pytest.raises(CommandError, match=created["id"]):
        run("reencrypt")
