"""The delivery engine: leases, retries, give-up, 410, Retry-After, caps, sweeping, rotation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from tests.live import Answer
from tests.webhooks.conftest import approval_data
from webhooks import dispatch, services
from webhooks.models import Delivery, Endpoint


@pytest.fixture(autouse=True)
def fast_schedule(settings):
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 0, 0]
    settings.WARDEN_WEBHOOKS_RETRY_JITTER = 0


def emit(org, event_type="approval.approved"):
    return services.event_emit(organization=org, event_type=event_type, data=approval_data())


def only_delivery(event) -> Delivery:
    (delivery,) = event.deliveries.all()
    return delivery


def test_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.fail_times(2)
    delivery = only_delivery(emit(org_a))
    for _ in range(3):
        dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert [a.response_status for a in delivery.attempts.all()] == [500, 500, 200]
    ids = {r.headers["webhook-id"] for r in webhook_receiver.received()}
    assert ids == {delivery.event.public_id}


def test_delivery_gives_up_after_the_last_scheduled_attempt(org_a, make_endpoint, webhook_receiver):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.always(Answer(status=500))
    delivery = only_delivery(emit(org_a))
    for _ in range(5):
        dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempt_count == 3


def test_next_attempt_time_follows_the_schedule_in_the_database(
    settings, org_a, make_endpoint, webhook_receiver
):
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 300, 1800]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.always(Answer(status=503))
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - delivery.attempts.get().created_at).total_seconds()
    assert 299 <= wait <= 302
    assert delivery.leased_until is None


def test_not_yet_due_delivery_is_not_sent(settings, org_a, make_endpoint, webhook_receiver):
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 300]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.always(Answer(status=500))
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert dispatch.delivery_attempt(delivery_public_id=delivery.public_id) is None
    assert len(webhook_receiver.received()) == 1


def test_retry_after_on_429_sets_the_next_attempt(settings, org_a, make_endpoint, webhook_receiver):
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 5, 5]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.then(Answer(status=429, headers={"Retry-After": "600"}))
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - delivery.attempts.get().created_at).total_seconds()
    assert 599 <= wait <= 602


def test_retry_after_is_capped(settings, org_a, make_endpoint, webhook_receiver):
    settings.WARDEN_WEBHOOKS_MAX_RETRY_AFTER = 3600
    make_endpoint(webhook_receiver.url())
    webhook_receiver.then(Answer(status=503, headers={"Retry-After": "999999"}))
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - delivery.attempts.get().created_at).total_seconds()
    assert wait <= 3602


def test_410_fails_the_delivery_and_disables_the_endpoint(org_a, make_endpoint, webhook_receiver):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    webhook_receiver.always(Answer(status=410))
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert not endpoint.enabled
    assert "410" in endpoint.disabled_reason


def test_refused_address_fails_at_once_without_retry(
    settings, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempt_count == 1
    assert webhook_receiver.received() == []


def test_endpoint_failing_for_five_days_is_disabled_and_admins_are_emailed(
    org_a, make_endpoint, webhook_receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=5, minutes=1)
    )
    webhook_receiver.always(Answer(status=500))
    delivery = only_delivery(emit(org_a))
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]


def test_success_clears_the_failing_since_mark(org_a, make_endpoint, webhook_receiver):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())
    dispatch.delivery_attempt(delivery_public_id=only_delivery(emit(org_a)).public_id)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_leased_delivery_cannot_be_leased_again(org_a, make_endpoint, webhook_receiver):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    delivery = only_delivery(emit(org_a))
    assert dispatch.delivery_lease(delivery_pk=delivery.pk, endpoint_pk=endpoint.pk)
    assert dispatch.delivery_lease(delivery_pk=delivery.pk, endpoint_pk=endpoint.pk) is None
    assert dispatch.delivery_attempt(delivery_public_id=delivery.public_id) is None


def test_an_expired_lease_can_be_taken_over(org_a, make_endpoint, webhook_receiver):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    delivery = only_delivery(emit(org_a))
    Delivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert dispatch.delivery_lease(delivery_pk=delivery.pk, endpoint_pk=endpoint.pk)


def test_endpoint_at_its_in_flight_cap_does_not_hold_back_another_endpoint(
    settings, org_a, make_endpoint, webhook_receiver
):
    settings.WARDEN_WEBHOOKS_MAX_IN_FLIGHT = 2
    slow = make_endpoint(webhook_receiver.url("/slow")).endpoint
    fast = make_endpoint(webhook_receiver.url("/fast")).endpoint
    events = [emit(org_a) for _ in range(3)]
    slow_ones = [e.deliveries.get(endpoint=slow) for e in events]
    fast_one = events[0].deliveries.get(endpoint=fast)
    assert dispatch.delivery_lease(delivery_pk=slow_ones[0].pk, endpoint_pk=slow.pk)
    assert dispatch.delivery_lease(delivery_pk=slow_ones[1].pk, endpoint_pk=slow.pk)
    assert dispatch.delivery_lease(delivery_pk=slow_ones[2].pk, endpoint_pk=slow.pk) is None
    assert dispatch.delivery_lease(delivery_pk=fast_one.pk, endpoint_pk=fast.pk)


def test_drain_sends_an_endpoints_backlog_oldest_first(org_a, make_endpoint, webhook_receiver):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    events = [emit(org_a) for _ in range(3)]
    assert dispatch.endpoint_drain(endpoint_pk=endpoint.pk) == 3
    got = [r.headers["webhook-id"] for r in webhook_receiver.received()]
    assert got == [e.public_id for e in events]


def test_sweeper_picks_due_deliveries_whose_wake_up_is_stale(
    settings, org_a, make_endpoint, webhook_receiver
):
    settings.WARDEN_WEBHOOKS_REQUEUE_AFTER = 30
    make_endpoint(webhook_receiver.url())
    fresh = only_delivery(emit(org_a))
    lost = only_delivery(emit(org_a))
    Delivery.objects.filter(pk=lost.pk).update(queued_at=timezone.now() - timedelta(minutes=1))
    assert dispatch.deliveries_sweep() == [lost.public_id]
    assert fresh.public_id not in dispatch.deliveries_sweep()


def test_sweeper_picks_a_retry_as_soon_as_it_is_due(org_a, make_endpoint, webhook_receiver):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.fail_times(1)
    delivery = only_delivery(emit(org_a))
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert dispatch.deliveries_sweep() == [delivery.public_id]


def test_sweeper_skips_leased_deliveries_until_the_lease_expires(
    org_a, make_endpoint, webhook_receiver
):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    delivery = only_delivery(emit(org_a))
    Delivery.objects.filter(pk=delivery.pk).update(queued_at=None)
    dispatch.delivery_lease(delivery_pk=delivery.pk, endpoint_pk=endpoint.pk)
    assert dispatch.deliveries_sweep() == []
    Delivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert dispatch.deliveries_sweep() == [delivery.public_id]


def test_after_rotation_standard_deliveries_verify_with_old_and_new_secret(
    org_a, make_endpoint, webhook_receiver
):
    created = make_endpoint(webhook_receiver.url())
    rotated = services.endpoint_rotate_secret(endpoint=created.endpoint)
    dispatch.delivery_attempt(delivery_public_id=only_delivery(emit(org_a)).public_id)
    (request,) = webhook_receiver.received()
    Webhook(created.secret).verify(request.body, request.headers)
    Webhook(rotated.secret).verify(request.body, request.headers)


def test_after_the_grace_period_only_the_new_secret_signs(org_a, make_endpoint, webhook_receiver):
    from standardwebhooks.webhooks import WebhookVerificationError

    created = make_endpoint(webhook_receiver.url())
    rotated = services.endpoint_rotate_secret(endpoint=created.endpoint)
    Endpoint.objects.filter(pk=created.endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.delivery_attempt(delivery_public_id=only_delivery(emit(org_a)).public_id)
    (request,) = webhook_receiver.received()
    Webhook(rotated.secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(created.secret).verify(request.body, request.headers)


def test_every_attempt_records_request_and_response(org_a, make_endpoint, webhook_receiver):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.always(Answer(status=202, body=b"thanks"))
    delivery = only_delivery(emit(org_a))
    attempt = dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert attempt.response_status == 202
    assert attempt.response_body == "thanks"
    assert attempt.request_headers["webhook-id"] == delivery.event.public_id
    assert '"stripe.refund"' in attempt.request_body


def test_an_unreadable_secret_is_a_logged_attempt_that_retries_not_a_crash(
    settings, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    delivery = only_delivery(emit(org_a))
    settings.SECRET_KEY = "a-different-secret-key-than-the-one-that-encrypted-it"
    attempt = dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert "Cannot sign" in attempt.error
    assert webhook_receiver.received() == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempt_count == 1
    assert Endpoint.objects.get(pk=delivery.endpoint_id).enabled
