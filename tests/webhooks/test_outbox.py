"""Events and deliveries are written with the change that caused them, or not at all."""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts.models import Plan
from tests.webhooks.conftest import approval_data
from wardenproject.errors import PlanRequired, ValidationFailed
from webhooks import services
from webhooks.models import Delivery, Event


def emit(org, event_type="approval.approved", agent=None):
    return services.event_emit(
        organization=org, event_type=event_type, data=approval_data(), agent=agent
    )


def test_event_and_deliveries_roll_back_with_the_transaction_that_emitted_them(
    org_a, make_endpoint
):
    make_endpoint("https://example.com/hook")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        emit(org_a)
        assert Delivery.objects.count() == 1
        raise Boom
    assert Event.objects.count() == 0
    assert Delivery.objects.count() == 0


def test_delivery_is_queued_only_after_commit(
    org_a, make_endpoint, django_capture_on_commit_callbacks
):
    make_endpoint("https://example.com/hook")
    with django_capture_on_commit_callbacks() as callbacks:
        emit(org_a)
    assert len(callbacks) == 1


def test_only_subscribed_enabled_endpoints_get_a_delivery(org_a, make_endpoint):
    subscribed = make_endpoint("https://a.example.com/", events=["approval.approved"])
    make_endpoint("https://b.example.com/", events=["approval.rejected"])
    make_endpoint("https://c.example.com/", events=["approval.approved"], enabled=False)
    event = emit(org_a)
    assert [d.endpoint for d in event.deliveries.all()] == [subscribed.endpoint]


def test_endpoint_limited_to_some_agents_only_gets_their_events(org_a, agent_a, make_endpoint):
    from agents.models import Agent

    other = Agent.objects.create(organization=org_a, name="other-bot")
    make_endpoint("https://a.example.com/", agents=[agent_a.public_id])
    assert emit(org_a, agent=agent_a).deliveries.count() == 1
    assert emit(org_a, agent=other).deliveries.count() == 0


def test_free_plan_is_refused_with_the_plan_that_unlocks_webhooks(org_a):
    org_a.plan = Plan.objects.get(slug="free")
    org_a.save()
    with pytest.raises(PlanRequired, match="Pro plan"):
        services.endpoint_create(actor=None, organization=org_a, url="https://example.com/hook")


def test_unknown_event_type_is_refused_naming_the_field(org_a):
    with pytest.raises(ValidationFailed) as exc:
        services.endpoint_create(
            actor=None, organization=org_a, url="https://example.com/", events=["approval.maybe"]
        )
    assert exc.value.field == "events"


def test_http_url_is_refused_when_plain_http_is_off(settings, org_a):
    settings.WARDEN_WEBHOOKS_ALLOW_HTTP = False
    with pytest.raises(ValidationFailed) as exc:
        services.endpoint_create(actor=None, organization=org_a, url="http://example.com/")
    assert exc.value.field == "url"


def test_secret_is_stored_encrypted(org_a):
    created = services.endpoint_create(actor=None, organization=org_a, url="https://example.com/")
    created.endpoint.refresh_from_db()
    assert created.secret not in created.endpoint.secret
    assert services.endpoint_signing_secrets(created.endpoint) == [created.secret]


@pytest.mark.parametrize(("fmt", "prefix"), [("arden", "whsk_"), ("agentwarden", "whsk_")])
def test_arden_and_agentwarden_secrets_are_plain_random_strings(org_a, fmt, prefix):
    created = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/", fmt=fmt
    )
    assert created.secret.startswith(prefix)
    assert len(created.secret) > 40


def test_resend_makes_a_failed_delivery_pending_again_with_the_same_event(org_a, make_endpoint):
    make_endpoint("https://example.com/hook")
    delivery = emit(org_a).deliveries.get()
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, attempt_count=9)
    delivery = services.delivery_resend(delivery=delivery)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempt_count == 0


def test_recover_requeues_only_failed_deliveries_since_the_given_time(org_a, make_endpoint):
    from datetime import timedelta

    from django.utils import timezone

    endpoint = make_endpoint("https://example.com/hook").endpoint
    old, recent, ok = (emit(org_a).deliveries.get() for _ in range(3))
    Delivery.objects.filter(pk=old.pk).update(
        status="failed", created_at=timezone.now() - timedelta(days=3)
    )
    Delivery.objects.filter(pk=recent.pk).update(status="failed")
    Delivery.objects.filter(pk=ok.pk).update(status="succeeded")
    since = timezone.now() - timedelta(days=1)
    assert services.deliveries_recover(endpoint=endpoint, since=since) == 1
    recent.refresh_from_db()
    assert recent.status == "pending"
