"""Retries are scheduled for their due time: a real worker, Redis, receiver, no sweeper."""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.live import Answer, wait_until
from tests.webhooks.conftest import approval_data
from webhooks import services
from webhooks.models import Delivery

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.live]


@pytest.fixture
def celery_worker_settings() -> str:
    return "tests.webhooks.retry_worker_settings"


def test_a_retry_after_of_2_seconds_is_sent_by_its_own_wake_up_with_no_sweep_running(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.then(Answer(status=503, headers={"Retry-After": "2"}))
    with transaction.atomic():
        event = services.event_emit(
            organization=org_a, event_type="approval.approved", data=approval_data()
        )
    first, second = webhook_receiver.wait_for(2, timeout=60)
    assert {first.headers["webhook-id"], second.headers["webhook-id"]} == {event.public_id}
    assert second.at - first.at >= 2  # not before it was due
    wait_until(
        lambda: Delivery.objects.filter(status=Delivery.Status.SUCCEEDED, attempt_count=2).exists(),
        what="the delivery to succeed on its second attempt",
    )
