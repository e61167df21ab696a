"""Mail has its own queue and workers: a mail server that never answers delays no webhook.

Real processes: a worker on the default queue (with beat), a worker on the mail queue (4
threads), PostgreSQL, Redis, a webhook receiver, and an SMTP server that accepts
connections and never answers. Held calls in six organisations each queue reviewer email,
enough to occupy every thread of a worker shared with webhooks.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts.models import Membership
from agents.models import Agent
from tests.approvals.conftest import request_create
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory, plan
from tests.live import wait_until
from tests.webhooks.conftest import approval_data
from webhooks import services

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.live]


@pytest.fixture
def celery_worker_settings() -> str:
    return "tests.core.mail_worker_settings"


@pytest.fixture
def celery_worker_env(silent_smtp) -> dict[str, str]:
    return {"TEST_SMTP_PORT": str(silent_smtp.port)}


@pytest.fixture
def celery_worker_queues() -> str:
    return "celery"  # as `make run` starts it: the default queue only


def test_a_webhook_is_delivered_while_every_mail_task_is_stuck_on_the_mail_server(
    silent_smtp, celery_worker, celery_mail_worker, org_a, webhook_receiver
):
    services.endpoint_create(
        actor=None, organization=org_a, url=webhook_receiver.url(), events=["approval.approved"]
    )
    for n in range(6):
        org = OrganizationFactory(name=f"Held {n}", plan=plan("pro"))
        reviewer = UserFactory(email=f"reviewer{n}@example.com")
        MembershipFactory(user=reviewer, organization=org, role=Membership.Role.APPROVER)
        request_create(Agent.objects.create(organization=org, name=f"bot-{n}"))
    wait_until(silent_smtp.connected, timeout=60, what="a mail task to reach the mail server")

    with transaction.atomic():
        event = services.event_emit(
            organization=org_a, event_type="approval.approved", data=approval_data("act_w")
        )
    (request,) = webhook_receiver.wait_for(1, timeout=60)
    assert request.headers["webhook-id"] == event.public_id
    assert silent_smtp.connected() >= 1  # mail was stuck the whole time
