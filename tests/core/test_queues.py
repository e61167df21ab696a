"""Which Celery queue each task goes to: mail never shares a queue with webhooks or expiry."""

from __future__ import annotations

import pytest

import approvals.tasks
import webhooks.tasks
from wardenproject.celery import app

assert approvals.tasks and webhooks.tasks  # registered with the app by importing them

MAIL_TASKS = ["approvals.notify", "webhooks.notify_disabled"]
DEFAULT_TASKS = [
    "webhooks.deliver",
    "webhooks.drain",
    "webhooks.sweep",
    "approvals.expire_overdue",
    "approvals.notify_sweep",
]


def queue_of(task_name: str) -> str:
    assert task_name in app.tasks, f"no task {task_name!r}"
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize("task_name", MAIL_TASKS)
def test_mail_tasks_are_routed_to_the_mail_queue(task_name):
    assert queue_of(task_name) == "mail"


@pytest.mark.parametrize("task_name", DEFAULT_TASKS)
def test_webhook_and_expiry_tasks_stay_on_the_default_queue(task_name):
    assert queue_of(task_name) == "celery"


def test_a_worker_started_without_queues_consumes_both_so_no_mail_is_stranded():
    assert set(app.amqp.queues.consume_from) == {"celery", "mail"}
