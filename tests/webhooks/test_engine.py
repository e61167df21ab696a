"""The delivery engine: leases, retries, give-up, 410, Retry-After, caps, sweeping, rotation."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.db import connection, connections
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from tests.live import Answer, wait_until
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


def test_endpoint_failing_for_five_days_is_disabled_and_admins_are_emailed_from_the_mail_queue(
    org_a, make_endpoint, webhook_receiver, django_capture_on_commit_callbacks, monkeypatch
):
    from webhooks.tasks import notify_disabled

    queued = []
    monkeypatch.setattr(
        notify_disabled, "apply_async", lambda args, kwargs, **options: queued.append(args)
    )
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
    assert mail.outbox == []  # the delivering worker does not talk to the mail server
    assert queued == [(endpoint.pk,)]
    notify_disabled(*queued[0])
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
    assert endpoint.url in mail.outbox[0].subject


def test_success_clears_the_failing_since_mark(org_a, make_endpoint, webhook_receiver):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())
    dispatch.delivery_attempt(delivery_public_id=only_delivery(emit(org_a)).public_id)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_leased_delivery_cannot_be_leased_again(org_a, make_endpoint, webhook_receiver):
    make_endpoint(webhook_receiver.url())
    delivery = only_delivery(emit(org_a))
    assert dispatch.delivery_lease(delivery_pk=delivery.pk)
    assert dispatch.delivery_lease(delivery_pk=delivery.pk) is None
    assert dispatch.delivery_attempt(delivery_public_id=delivery.public_id) is None


def test_an_expired_lease_can_be_taken_over(org_a, make_endpoint, webhook_receiver):
    make_endpoint(webhook_receiver.url())
    delivery = only_delivery(emit(org_a))
    Delivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert dispatch.delivery_lease(delivery_pk=delivery.pk)


def hold_slots(endpoint_pk: int, count: int):
    """Take ``count`` slots of an endpoint from other threads (other database sessions)."""
    taken, release = threading.Barrier(count + 1), threading.Event()
    won: list[bool] = []

    def hold() -> None:
        try:
            with dispatch.endpoint_slot(endpoint_pk) as got:
                won.append(got)
                taken.wait(10)
                release.wait(10)
        finally:
            connection.close()

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    taken.wait(10)
    return won, release, threads


@pytest.mark.postgres
def test_endpoint_with_every_slot_taken_turns_wake_ups_away_without_waiting(
    settings, org_a, make_endpoint
):
    settings.WARDEN_WEBHOOKS_MAX_IN_FLIGHT = 2
    slow = make_endpoint("https://slow.example.com/hook").endpoint
    fast = make_endpoint("https://fast.example.com/hook").endpoint
    won, release, threads = hold_slots(slow.pk, 2)
    try:
        assert won == [True, True]
        with dispatch.endpoint_slot(slow.pk) as got:
            assert not got
        with dispatch.endpoint_slot(fast.pk) as got:
            assert got
    finally:
        release.set()
        for thread in threads:
            thread.join()
    with dispatch.endpoint_slot(slow.pk) as got:
        assert got


@pytest.mark.postgres
def test_a_slot_is_released_when_its_holders_connection_dies(settings, org_a, make_endpoint):
    settings.WARDEN_WEBHOOKS_MAX_IN_FLIGHT = 1
    endpoint = make_endpoint("https://slow.example.com/hook").endpoint
    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, %s)",
                [dispatch._SLOT_NAMESPACE, dispatch._endpoint_lock_key(endpoint.pk)],
            )
            assert cursor.fetchone() == (True,)
        won, release, threads = hold_slots(endpoint.pk, 1)
        release.set()
        threads[0].join()
        assert won == [False]
    finally:
        holder.close()  # as a killed worker's connection would

    def slot_free_for_another_session() -> bool:
        won, release, threads = hold_slots(endpoint.pk, 1)
        release.set()
        threads[0].join()
        return won == [True]

    # The server ends the session (and drops its locks) just after the client hangs up.
    wait_until(slot_free_for_another_session, timeout=10, what="the dead session's slot")


def test_without_advisory_locks_live_leases_count_against_the_cap(
    org_a, make_endpoint, webhook_receiver
):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    first, second = (only_delivery(emit(org_a)) for _ in range(2))
    assert dispatch._leases_below_cap(endpoint.pk, 2)
    dispatch.delivery_lease(delivery_pk=first.pk)
    assert dispatch._leases_below_cap(endpoint.pk, 2)
    dispatch.delivery_lease(delivery_pk=second.pk)
    assert not dispatch._leases_below_cap(endpoint.pk, 2)


def test_a_wake_up_whose_delivery_is_taken_leaves_the_backlog_to_its_holder(
    org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    taken, waiting = (only_delivery(emit(org_a)) for _ in range(2))
    dispatch.delivery_lease(delivery_pk=taken.pk)
    assert dispatch.delivery_wake(delivery_public_id=taken.public_id) == 0
    assert webhook_receiver.received() == []
    waiting.refresh_from_db()
    assert waiting.leased_until is None
    assert waiting.attempt_count == 0


def test_a_wake_up_sends_its_delivery_then_the_endpoints_backlog(
    org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    events = [emit(org_a) for _ in range(3)]
    assert dispatch.delivery_wake(delivery_public_id=only_delivery(events[2]).public_id) == 3
    got = [r.headers["webhook-id"] for r in webhook_receiver.received()]
    assert got == [events[2].public_id, events[0].public_id, events[1].public_id]


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
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    fresh = only_delivery(emit(org_a))
    lost = only_delivery(emit(org_a))
    Delivery.objects.filter(pk=lost.pk).update(queued_at=timezone.now() - timedelta(minutes=1))
    before = Delivery.objects.get(pk=fresh.pk).queued_at
    assert [woken for woken, _ in dispatch.deliveries_sweep()] == [endpoint.pk]
    assert Delivery.objects.get(pk=fresh.pk).queued_at == before
    assert Delivery.objects.get(pk=lost.pk).queued_at > timezone.now() - timedelta(seconds=5)
    assert dispatch.deliveries_sweep() == []


@pytest.fixture
def queued_wakes(monkeypatch) -> list[tuple[int, datetime | None]]:
    """Wake-ups for a time queued (endpoint pk, eta), instead of sent to the broker."""
    from webhooks.tasks import drain

    calls: list[tuple[int, datetime | None]] = []
    monkeypatch.setattr(
        drain,
        "apply_async",
        lambda args, kwargs=None, **options: calls.append((args[0], options.get("eta"))),
    )
    return calls


def test_a_retry_after_of_2_seconds_is_queued_for_its_due_time_not_the_next_sweep(
    settings, org_a, make_endpoint, webhook_receiver, queued_wakes,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 300, 300]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.then(Answer(status=503, headers={"Retry-After": "2"}))
    delivery = only_delivery(emit(org_a))
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    attempt = delivery.attempts.get()
    wait = (delivery.next_attempt_at - attempt.created_at).total_seconds()
    assert 2 <= wait - attempt.duration_ms / 1000 <= 3  # 2 s after the answer
    ((woken, eta),) = queued_wakes
    assert woken == delivery.endpoint_id
    assert delivery.next_attempt_at <= eta <= delivery.next_attempt_at + timedelta(seconds=0.5)
    assert delivery.queued_at == delivery.next_attempt_at  # the sweeper leaves it alone
    assert dispatch.deliveries_sweep() == []


def test_a_failed_attempt_queues_its_retry_for_the_scheduled_time(
    settings, org_a, make_endpoint, webhook_receiver, queued_wakes,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 5, 300]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.fail_times(1)
    delivery = only_delivery(emit(org_a))
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    delivery.refresh_from_db()
    ((woken, eta),) = queued_wakes
    assert woken == delivery.endpoint_id
    assert delivery.next_attempt_at <= eta <= delivery.next_attempt_at + timedelta(seconds=0.5)


@pytest.mark.django_db(transaction=True)
def test_a_retrys_wake_up_is_queued_only_once_the_failed_attempt_is_committed(
    settings, org_a, make_endpoint, webhook_receiver, monkeypatch
):
    from webhooks.tasks import drain

    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 1, 300]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.fail_times(1)
    delivery = only_delivery(emit(org_a))
    seen = []

    def queue(args, kwargs=None, **options):  # what a worker woken now would find
        row = Delivery.objects.values("attempt_count", "leased_until").get(pk=delivery.pk)
        seen.append(row)

    monkeypatch.setattr(drain, "apply_async", queue)
    dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert seen == [{"attempt_count": 1, "leased_until": None}]


def test_a_retry_due_later_is_queued_by_the_sweeper_for_its_due_time_once_it_is_near(
    settings, org_a, make_endpoint, webhook_receiver, queued_wakes,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    settings.WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 300, 300]
    make_endpoint(webhook_receiver.url())
    webhook_receiver.fail_times(1)
    delivery = only_delivery(emit(org_a))
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.delivery_attempt(delivery_public_id=delivery.public_id)
    assert queued_wakes == []  # five minutes out: no task waits that long in a worker
    assert dispatch.deliveries_sweep() == []
    soon = timezone.now() + timedelta(seconds=8)  # within the look-ahead (two 5 s sweeps)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=soon)
    ((woken, eta),) = dispatch.deliveries_sweep()
    assert woken == delivery.endpoint_id
    assert soon <= eta <= soon + timedelta(seconds=0.5)
    assert dispatch.deliveries_sweep() == []  # queued once


def test_the_sweeper_wakes_each_endpoint_once_for_its_due_deliveries(
    org_a, make_endpoint, webhook_receiver
):
    endpoint = make_endpoint(webhook_receiver.url()).endpoint
    lost = [only_delivery(emit(org_a)) for _ in range(3)]
    Delivery.objects.filter(pk__in=[d.pk for d in lost]).update(queued_at=None)
    ((woken, eta),) = dispatch.deliveries_sweep()
    assert woken == endpoint.pk
    assert eta <= timezone.now() + timedelta(seconds=0.5)


def test_sweeper_skips_leased_deliveries_until_the_lease_expires(
    org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    delivery = only_delivery(emit(org_a))
    Delivery.objects.filter(pk=delivery.pk).update(queued_at=None)
    dispatch.delivery_lease(delivery_pk=delivery.pk)
    assert dispatch.deliveries_sweep() == []
    Delivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert [woken for woken, _ in dispatch.deliveries_sweep()] == [delivery.endpoint_id]


def test_after_rotation_standard_deliveries_verify_with_old_and_new_secret(
    org_a, make_endpoint, webhook_receiver
):
    created = make_endpoint(webhook_receiver.url())
    rotated = services.endpoint_rotate_secret(actor=None, endpoint=created.endpoint)
    dispatch.delivery_attempt(delivery_public_id=only_delivery(emit(org_a)).public_id)
    (request,) = webhook_receiver.received()
    Webhook(created.secret).verify(request.body, request.headers)
    Webhook(rotated.secret).verify(request.body, request.headers)


def test_after_the_grace_period_only_the_new_secret_signs(org_a, make_endpoint, webhook_receiver):
    from standardwebhooks.webhooks import WebhookVerificationError

    created = make_endpoint(webhook_receiver.url())
    rotated = services.endpoint_rotate_secret(actor=None, endpoint=created.endpoint)
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


def test_an_attempt_whose_lease_was_lost_is_logged_without_touching_the_delivery(
    org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    delivery = only_delivery(emit(org_a))
    leased = dispatch._lease_and_load(delivery_pk=delivery.pk)
    taken_over = timezone.now() + timedelta(minutes=5)
    Delivery.objects.filter(pk=delivery.pk).update(leased_until=taken_over)
    attempt = dispatch._attempt_leased(leased)
    delivery.refresh_from_db()
    assert attempt.pk == delivery.attempts.get().pk
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempt_count == 0
    assert delivery.leased_until == taken_over
