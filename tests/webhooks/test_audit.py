"""Every change to a webhook endpoint is in the audit log, naming who made it, from each
interface (API, pages, command, admin) and from Warden itself; never with a secret."""

from __future__ import annotations

import json
from http import HTTPStatus
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from tests.conftest import PASSWORD
from tests.live import Answer
from tests.webhooks.conftest import approval_data
from webhooks import dispatch, services
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db
BASE = "/api/v1/webhooks/endpoints"


def login(client, user):
    assert client.login(email=user.email, password=PASSWORD)
    return client


def changes(endpoint_id: str) -> list[AuditEntry]:
    """The endpoint's audit entries, oldest first."""
    return list(
        AuditEntry.objects.filter(
            kind=AuditEntry.Kind.CONFIG, target_type="endpoint", target_id=endpoint_id
        ).order_by("created_at", "id")
    )


def test_the_api_records_create_change_rotate_and_delete_with_the_member(client, alice, org_a):
    login(client, alice)
    created = client.post(
        BASE,
        {"url": "https://example.com/hook", "events": ["approval.approved"]},
        content_type="application/json",
    ).json()
    endpoint_id = created["id"]
    client.patch(
        f"{BASE}/{endpoint_id}",
        {"events": ["approval.approved", "approval.rejected"], "enabled": False},
        content_type="application/json",
    )
    rotated = client.post(f"{BASE}/{endpoint_id}/rotate").json()
    assert client.delete(f"{BASE}/{endpoint_id}").status_code == HTTPStatus.NO_CONTENT

    entries = changes(endpoint_id)
    assert [e.data["verb"] for e in entries] == [
        "created",
        "updated",
        "rotated the secret of",
        "deleted",
    ]
    assert {(e.actor_user, e.actor_label, e.source) for e in entries} == {
        (alice, alice.email, "api")
    }
    created_entry, updated, rotation, deleted = entries
    assert created_entry.data["before"] is None
    assert created_entry.data["after"]["url"] == "https://example.com/hook"
    assert updated.data["before"]["events"] == ["approval.approved"]
    assert updated.data["after"]["events"] == ["approval.approved", "approval.rejected"]
    assert (updated.data["before"]["enabled"], updated.data["after"]["enabled"]) == (True, False)
    assert rotation.data["after"]["secret"] == "rotated"
    assert deleted.data["before"]["url"] == "https://example.com/hook"
    assert deleted.data["after"] is None
    logged = json.dumps([e.data for e in entries]) + " ".join(e.reason for e in entries)
    for secret in (created["secret"], rotated["secret"]):
        assert secret not in logged


def test_a_change_that_changes_nothing_writes_no_entry(client, alice, org_a):
    login(client, alice)
    endpoint_id = client.post(
        BASE, {"url": "https://example.com/hook"}, content_type="application/json"
    ).json()["id"]
    client.patch(f"{BASE}/{endpoint_id}", {"enabled": True}, content_type="application/json")
    assert [e.data["verb"] for e in changes(endpoint_id)] == ["created"]


def test_a_refused_change_writes_no_entry(client, alice, org_a):
    login(client, alice)
    endpoint_id = client.post(
        BASE, {"url": "https://example.com/hook"}, content_type="application/json"
    ).json()["id"]
    response = client.patch(
        f"{BASE}/{endpoint_id}", {"url": "ftp://nope"}, content_type="application/json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert [e.data["verb"] for e in changes(endpoint_id)] == ["created"]


def test_the_pages_record_each_change_with_the_member(client, alice, org_a):
    login(client, alice)
    client.post(
        "/webhooks/new/",
        {"url": "https://example.com/hook", "format": "standard", "events": ["approval.approved"]},
    )
    endpoint_id = Endpoint.objects.get().public_id
    for action in ("disable", "enable", "rotate", "delete"):
        client.post(f"/webhooks/{endpoint_id}/{action}/")
    entries = changes(endpoint_id)
    assert [e.data["verb"] for e in entries] == [
        "created",
        "disabled",
        "enabled",
        "rotated the secret of",
        "deleted",
    ]
    assert {(e.actor_user, e.source) for e in entries} == {(alice, "web")}


def test_an_outsiders_attempt_writes_nothing(client, charlie, org_c, alice, org_a):
    endpoint = services.endpoint_create(
        organization=org_a, actor=alice, url="https://example.com/hook"
    ).endpoint
    login(client, charlie)
    for action in ("rotate", "disable", "delete"):
        assert (
            client.post(f"/webhooks/{endpoint.public_id}/{action}/").status_code
            == HTTPStatus.NOT_FOUND
        )
    assert [e.data["verb"] for e in changes(endpoint.public_id)] == ["created"]


def run(*args: str) -> str:
    out = StringIO()
    call_command("warden_webhook", *args, stdout=out)
    return out.getvalue()


def test_the_command_records_the_actor_it_is_given(alice, org_a):
    created = json.loads(
        run(
            "create",
            "--org",
            org_a.name,
            "--url",
            "https://example.com/hook",
            "--actor",
            "ALICE@example.com",
            "--json",
        )
    )
    rotated = json.loads(
        run("rotate", "--org", org_a.name, created["id"], "--actor", alice.email, "--json")
    )
    entries = changes(created["id"])
    assert [e.data["verb"] for e in entries] == ["created", "rotated the secret of"]
    assert {(e.actor_user, e.source) for e in entries} == {(alice, "command")}
    assert rotated["secret"] not in json.dumps([e.data for e in entries])
    assert rotated["previous_secret_expires_at"]


def test_the_command_without_an_actor_records_the_system(org_a):
    created = json.loads(
        run("create", "--org", org_a.name, "--url", "https://example.com/hook", "--json")
    )
    (entry,) = changes(created["id"])
    assert (entry.actor_user, entry.actor_label, entry.source) == (None, "system", "command")


@pytest.mark.parametrize(
    ("persona", "message"),
    [
        ("bob", "may not manage webhooks"),  # an approver
        ("charlie", "no active member"),  # an outsider
    ],
)
def test_the_command_refuses_an_actor_who_could_not_make_the_change(
    request, org_a, org_c, persona, message
):
    user = request.getfixturevalue(persona)
    with pytest.raises(CommandError, match=message):
        run(
            "create",
            "--org",
            org_a.name,
            "--url",
            "https://example.com/hook",
            "--actor",
            user.email,
        )
    assert not Endpoint.objects.exists()


def test_the_command_refuses_an_unknown_actor(org_a):
    with pytest.raises(CommandError, match="no active member"):
        run("create", "--org", org_a.name, "--url", "https://e.com/", "--actor", "x@example.com")
    assert not Endpoint.objects.exists()


@pytest.fixture
def staff_client(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save(update_fields=["is_staff", "is_superuser"])
    client.force_login(alice)
    return client


def test_the_admin_records_changes_and_deletions_with_the_staff_member(staff_client, alice, org_a):
    endpoint = services.endpoint_create(
        organization=org_a, actor=None, url="https://example.com/hook"
    ).endpoint
    response = staff_client.post(
        f"/admin/webhooks/endpoint/{endpoint.pk}/change/",
        {
            "url": "https://example.com/other",
            "description": "pager",
            "events": '["approval.approved"]',
            "enabled": "on",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    response = staff_client.post(f"/admin/webhooks/endpoint/{endpoint.pk}/delete/", {"post": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    assert not Endpoint.objects.exists()
    _created, updated, deleted = changes(endpoint.public_id)
    assert (updated.actor_user, updated.source) == (alice, "admin")
    assert updated.data["after"]["url"] == "https://example.com/other"
    assert (deleted.actor_user, deleted.source) == (alice, "admin")


def test_the_admin_refuses_an_unknown_event_as_a_form_error(staff_client, org_a):
    endpoint = services.endpoint_create(
        organization=org_a, actor=None, url="https://example.com/hook"
    ).endpoint
    response = staff_client.post(
        f"/admin/webhooks/endpoint/{endpoint.pk}/change/",
        {"url": "https://example.com/hook", "events": '["approval.maybe"]', "enabled": "on"},
    )
    assert response.status_code == HTTPStatus.OK  # the form again, with the error
    assert len(changes(endpoint.public_id)) == 1


def test_warden_disabling_an_endpoint_after_410_is_recorded_as_the_system(
    org_a, make_endpoint, webhook_receiver
):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    webhook_receiver.always(Answer(status=410))
    event = services.event_emit(
        organization=org_a, event_type="approval.approved", data=approval_data()
    )
    delivery = Delivery.objects.get(event=event)
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    entry = changes(endpoint.public_id)[-1]
    assert entry.data["verb"] == "disabled"
    assert (entry.actor_user, entry.actor_label, entry.source) == (None, "system", "delivery")
    assert "410" in entry.data["after"]["disabled_reason"]
