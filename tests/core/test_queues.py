"""Which Celery queue each task goes to: mail never shares a queue with webhooks or expiry."""

from __future__ import annotations

import pytest

import approvals.tasks
import webhooks.tasks
from wardenproject.celery import app

assert approvals.tasks and webhooks.tasks  # registered with the app by importing them

MAIL_TASKS = ["approvals.notify", "webhooks.notify_disabled"]
SLACK_TASKS = ["approvals.slack_post", "approvals.slack_update"]
DEFAULT_TASKS = [
    "webhooks.deliver",
    "webhooks.drain",
    "webhooks.sweep",
    "approvals.expire_overdue",
    "approvals.notify_sweep",
    "approvals.slack_sweep",
]


def queue_of(task_name: str) -> str:
    assert task_name in app.tasks, f"no task {task_name!r}"
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize("task_name", MAIL_TASKS)
def test_mail_tasks_are_routed_to_the_mail_queue(task_name):
    assert queue_of(task_name) == "mail"


@pytest.mark.parametrize("task_name", SLACK_TASKS)
def test_slack_tasks_are_routed_to_the_slack_queue(task_name):
    assert queue_of(task_name) == "slack"


@pytest.mark.parametrize("task_name", DEFAULT_TASKS)
def test_webhook_and_expiry_tasks_stay_on_the_default_queue(task_name):
    assert queue_of(task_name) == "celery"


def test_a_worker_started_without_queues_consumes_all_so_no_mail_is_stranded():
    assert set(app.amqp.queues.consume_from) == {"celery", "mail", "slack"}


def test_make_run_and_the_systemd_mail_worker_consume_the_slack_queue():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert '"mail,slack"' in (root / "scripts" / "run_all.py").read_text()
    unit = (root / "deploy" / "systemd" / "warden-mail-worker.service").read_text()
    assert "-Q mail,slack " in unit
