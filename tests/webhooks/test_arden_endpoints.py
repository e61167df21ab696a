"""Arden-format endpoints carry decision events only.

ardenpy's ``handle_webhook`` knows one event type, ``action_approved``; it treats every other
one as a denial: it pops the action's callbacks and calls ``on_denial``. A pending notice sent
to a drop-in ardenpy user would deny a call that is merely waiting for a reviewer, and the
later approval would find no callback. So Warden refuses such subscriptions (service, API,
form, command) and never sends an Arden endpoint anything but decisions (and the test ping a
member asks for, whose made-up action id matches no callback).
"""

from __future__ import annotations

import importlib
import json
from http import HTTPStatus
from io import StringIO

import ardenpy
import pytest
from django.core.management import CommandError, call_command

from approvals.services import approval_decide
from audit.models import AuditEntry
from tests.agents.conftest import add_rule, keys_for
from tests.conftest import PASSWORD
from tests.webhooks.conftest import approval_data
from wardenproject.errors import ValidationFailed
from webhooks import dispatch, services
from webhooks.models import Delivery, Endpoint, Event

PENDING = "log.pending_approval"
DECISIONS = ["approval.approved", "approval.rejected", "approval.expired"]
NOT_DECISIONS = [PENDING, "webhook.test"]


def login(client, user):
    assert client.login(email=user.email, password=PASSWORD)
    return client


def arden_endpoint(org, url="https://example.com/hook", events=None) -> Endpoint:
    return services.endpoint_create(
        actor=None, organization=org, url=url, fmt="arden", events=events or DECISIONS
    ).endpoint


def stored_before_the_rule(endpoint: Endpoint, events: list[str]) -> Endpoint:
    """An endpoint saved before Arden subscriptions were checked (or edited in the admin)."""
    Endpoint.objects.filter(pk=endpoint.pk).update(events=events)
    endpoint.refresh_from_db()
    return endpoint


# --- Subscriptions are refused -------------------------------------------------------------


@pytest.mark.parametrize("event_type", NOT_DECISIONS)
def test_an_arden_endpoint_cannot_subscribe_to_a_non_decision_event(org_a, event_type):
    with pytest.raises(ValidationFailed) as refused:
        services.endpoint_create(
            actor=None,
            organization=org_a,
            url="https://example.com/hook",
            fmt="arden",
            events=["approval.approved", event_type],
        )
    assert refused.value.field == "events"
    assert event_type in refused.value.detail
    assert "Arden" in refused.value.detail
    assert not Endpoint.objects.exists()


def test_an_arden_endpoint_cannot_be_changed_to_take_pending_notices(org_a):
    endpoint = arden_endpoint(org_a)
    with pytest.raises(ValidationFailed) as refused:
        services.endpoint_update(actor=None, endpoint=endpoint, events=[*DECISIONS, PENDING])
    assert refused.value.field == "events"
    endpoint.refresh_from_db()
    assert endpoint.events == DECISIONS


def test_an_arden_endpoint_without_events_given_takes_every_decision(org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://example.com/hook", fmt="arden"
    ).endpoint
    assert endpoint.events == DECISIONS


@pytest.mark.parametrize("fmt", ["standard", "agentwarden"])
def test_other_formats_still_take_pending_notices(org_a, fmt):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://example.com/hook", fmt=fmt, events=[PENDING]
    ).endpoint
    assert endpoint.events == [PENDING]


def test_the_api_refuses_an_arden_endpoint_with_pending_notices_naming_events(client, alice, org_a):
    login(client, alice)
    response = client.post(
        "/api/v1/webhooks/endpoints",
        {"url": "https://example.com/hook", "format": "arden", "events": [*DECISIONS, PENDING]},
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.json()
    assert (body["code"], body["field"]) == ("invalid", "events")
    assert PENDING in body["detail"]
    assert not Endpoint.objects.exists()


def test_the_api_refuses_adding_pending_notices_to_an_arden_endpoint(client, alice, org_a):
    endpoint = arden_endpoint(org_a)
    login(client, alice)
    response = client.patch(
        f"/api/v1/webhooks/endpoints/{endpoint.public_id}",
        {"events": [PENDING]},
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "events"
    endpoint.refresh_from_db()
    assert endpoint.events == DECISIONS


def test_the_form_refuses_an_arden_endpoint_with_pending_notices(client, alice, org_a):
    login(client, alice)
    response = client.post(
        "/webhooks/new/",
        {"url": "https://example.com/hook", "format": "arden", "events": [*DECISIONS, PENDING]},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.context["error_field"] == "events"
    assert PENDING in response.content.decode()
    assert not Endpoint.objects.exists()


def test_the_command_refuses_an_arden_endpoint_with_pending_notices(org_a):
    with pytest.raises(CommandError, match=r"Arden.*log\.pending_approval"):
        call_command(
            "warden_webhook",
            "create",
            "--org",
            org_a.name,
            "--url",
            "https://example.com/hook",
            "--format",
            "arden",
            "--events",
            f"approval.approved,{PENDING}",
            stdout=StringIO(),
        )
    assert not Endpoint.objects.exists()


def test_the_admin_refuses_pending_notices_on_an_arden_endpoint(client, alice, org_a):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    endpoint = arden_endpoint(org_a)
    client.force_login(alice)
    url = f"/admin/webhooks/endpoint/{endpoint.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "agents"}
    data |= {"organization": org_a.pk, "events": json.dumps([*DECISIONS, PENDING])}
    response = client.post(url, data)
    assert response.status_code == HTTPStatus.OK  # the form again, with the error
    assert PENDING in str(response.context["adminform"].form.errors["events"])
    endpoint.refresh_from_db()
    assert endpoint.events == DECISIONS


# --- Nothing but decisions is ever sent --------------------------------------------------------


def test_an_arden_endpoint_stored_with_pending_notices_is_sent_decisions_only(org_a):
    arden = stored_before_the_rule(arden_endpoint(org_a), [PENDING, *DECISIONS])
    standard = services.endpoint_create(
        actor=None, organization=org_a, url="https://example.com/std", events=[PENDING, *DECISIONS]
    ).endpoint
    pending = services.event_emit(organization=org_a, event_type=PENDING, data=approval_data())
    assert [d.endpoint for d in pending.deliveries.all()] == [standard]
    approved = services.event_emit(
        organization=org_a, event_type="approval.approved", data=approval_data()
    )
    assert {d.endpoint for d in approved.deliveries.all()} == {arden, standard}


def test_a_pending_notice_queued_for_an_arden_endpoint_before_the_rule_is_not_sent(
    org_a, webhook_receiver
):
    endpoint = arden_endpoint(org_a, url=webhook_receiver.url())
    event = Event.objects.create(organization=org_a, event_type=PENDING, data=approval_data())
    delivery = Delivery.objects.create(event=event, endpoint=endpoint)
    attempt = dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert webhook_receiver.received() == []
    assert "Arden" in attempt.error
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is None  # not the receiver's fault


def test_a_test_ping_to_an_arden_endpoint_is_still_sent(org_a, webhook_receiver):
    endpoint = arden_endpoint(org_a, url=webhook_receiver.url())
    delivery = services.endpoint_send_test(endpoint=endpoint)
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    (request,) = webhook_receiver.received()
    assert json.loads(request.body)["event_type"] == "webhook_test"


# --- Endpoints stored before: the data migration -----------------------------------------------


def test_the_migration_keeps_only_decisions_on_arden_endpoints_and_audits_each_change(org_a):
    from django.apps import apps

    migration = importlib.import_module(
        "webhooks.migrations.0004_arden_endpoints_decision_events_only"
    )
    mixed = stored_before_the_rule(
        arden_endpoint(org_a, "https://a.example.com/"), [PENDING, "approval.approved"]
    )
    only_pending = stored_before_the_rule(
        arden_endpoint(org_a, "https://b.example.com/"), [PENDING]
    )
    clean = arden_endpoint(org_a, "https://c.example.com/")
    standard = services.endpoint_create(
        actor=None, organization=org_a, url="https://d.example.com/", events=[PENDING]
    ).endpoint

    migration.arden_decision_events_only(apps, None)

    for endpoint in (mixed, only_pending, clean, standard):
        endpoint.refresh_from_db()
    assert (mixed.events, mixed.enabled) == (["approval.approved"], True)
    assert (only_pending.events, only_pending.enabled) == ([], False)
    assert "decision events only" in only_pending.disabled_reason
    assert clean.events == DECISIONS
    assert standard.events == [PENDING]
    entries = AuditEntry.objects.filter(
        kind=AuditEntry.Kind.CONFIG, target_type="endpoint", source="migration"
    )
    by_target = {e.target_id: e for e in entries}
    assert set(by_target) == {mixed.public_id, only_pending.public_id}
    entry = by_target[mixed.public_id]
    assert entry.organization == org_a
    assert entry.actor_label == "system"
    assert entry.data["before"]["events"] == [PENDING, "approval.approved"]
    assert entry.data["after"]["events"] == ["approval.approved"]
    assert by_target[only_pending.public_id].data["after"]["enabled"] is False


# --- The real ardenpy against a real delivery --------------------------------------------------


@pytest.fixture
def arden_agent(live_server, org_a, alice):
    from agents import services as agent_services

    bot = agent_services.agent_create(organization=org_a, actor=alice, name="support-bot")
    add_rule(bot, name="refund limit", action="stripe.refund", effect="requires_approval")
    keys = keys_for(bot, alice)
    ardenpy.configure(api_key=keys.live, api_url=live_server.url, retry_attempts=1)
    yield keys
    ardenpy.clear_session()


def deliver_everything() -> None:
    for public_id in Delivery.objects.filter(status=Delivery.Status.PENDING).values_list(
        "public_id", flat=True
    ):
        dispatch.delivery_attempt(delivery_public_id=public_id)


@pytest.mark.live
def test_with_ardenpy_a_pending_call_is_not_denied_and_its_approval_runs_on_approval(
    arden_agent, org_a, bob, webhook_receiver
):
    created = services.endpoint_create(
        actor=None, organization=org_a, url=webhook_receiver.url(), fmt="arden", events=DECISIONS
    )
    secret = created.secret
    stored_before_the_rule(created.endpoint, [PENDING, *DECISIONS])  # Warden allowed it once
    approved, denied = [], []
    pending = ardenpy.guard_tool(
        "stripe.refund",
        lambda amount, customer_id: None,
        approval_mode="webhook",
        on_approval=approved.append,
        on_denial=denied.append,
    )(150.0, "cus_abc")
    assert isinstance(pending, ardenpy.PendingApproval)

    deliver_everything()
    for request in webhook_receiver.received():
        ardenpy.handle_webhook(request.body, request.headers, signing_key=secret)
    assert denied == []  # the call is merely waiting for a reviewer

    approval_decide(
        request_or_action_id=pending.action_id, actor_user=bob, approve=True, source="api"
    )
    deliver_everything()
    (request,) = webhook_receiver.received()
    ardenpy.handle_webhook(request.body, request.headers, signing_key=secret)
    assert [e.action_id for e in approved] == [pending.action_id]
    assert approved[0].context == {"amount": 150.0, "customer_id": "cus_abc"}
    assert denied == []
