"""Row locks of the approval paths: a decision locks its request row and nothing else.

PostgreSQL only (SQLite has no row locks). A decision runs in a thread and is paused inside
its transaction; the test's own connection then tries the rows the decision must leave
alone. ``NOWAIT`` and a short ``lock_timeout`` turn a wait on the paused decision into an
error at once, so the outcome does not depend on how fast the machine is: the paused
decision holds its locks until the test lets it go.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client

from accounts.models import Membership
from approvals import services
from approvals.models import ApprovalRequest
from tests.approvals.conftest import key_create, request_create
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory, plan

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@contextmanager
def decision_paused_after(
    monkeypatch: pytest.MonkeyPatch, step: str, *, request: ApprovalRequest, reviewer: Any
) -> Iterator[None]:
    """Approve ``request`` in another thread, paused (transaction open, locks held) right
    after the function ``approvals.services.<step>`` returns inside the decision."""
    reached, release = threading.Event(), threading.Event()
    real = getattr(services, step)
    errors: list[BaseException] = []

    def paused(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if threading.current_thread() is thread:
            reached.set()
            release.wait(60)
        return result

    def decide() -> None:
        try:
            services.approval_decide(
                request_or_action_id=request, actor_user=reviewer, approve=True
            )
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            reached.set()
            connection.close()

    monkeypatch.setattr(services, step, paused)
    thread = threading.Thread(target=decide)
    thread.start()
    assert reached.wait(60), "the decision never reached the pause"
    try:
        assert not errors, errors
        yield
    finally:
        release.set()
        thread.join(60)
    assert not errors, errors
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.APPROVED


def can_lock(table: str, pk: int, mode: str = "FOR UPDATE") -> bool:
    """Whether this connection can take ``mode`` on the row right now (never waits)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s {mode} NOWAIT", [pk])  # noqa: S608
            return cursor.fetchone() == (1,)
    except OperationalError as error:
        assert "could not obtain lock" in str(error), error
        return False


@contextmanager
def lock_timeout(value: str) -> Iterator[None]:
    """Anything this connection would wait for behind the paused decision fails instead."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{value}'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def test_a_decision_holds_a_row_lock_on_its_request_only(monkeypatch, org_a, bob, agent_a):
    request = request_create(agent_a)
    with decision_paused_after(monkeypatch, "_is_overdue", request=request, reviewer=bob):
        assert not can_lock("approvals_approvalrequest", request.pk)  # the pause holds it
        assert can_lock("accounts_organization", org_a.pk)
        assert can_lock("accounts_plan", org_a.plan_id)
        assert can_lock("agents_agent", agent_a.pk)


def test_a_decision_in_progress_holds_up_no_other_organisation_and_no_check(
    monkeypatch, org_a, bob, agent_a
):
    """Paused at the end of its transaction (vote, audit row and event written): a decision
    in another organisation on the same plan, and an allowed check in the same organisation,
    both go through without waiting for it."""
    other = OrganizationFactory(name="Other Co", plan=org_a.plan)
    assert other.plan_id == org_a.plan_id == plan("pro").pk
    other_reviewer = UserFactory(email="olga@example.com")
    MembershipFactory(user=other_reviewer, organization=other, role=Membership.Role.APPROVER)
    other_agent = agent_a.__class__.objects.create(organization=other, name="other-bot")
    other_request = request_create(other_agent)
    request = request_create(agent_a)
    key = key_create(org_a, "agent", agent_a)
    with (
        decision_paused_after(monkeypatch, "_wake_on_commit", request=request, reviewer=bob),
        lock_timeout("200ms"),
    ):
        decided = services.approval_decide(
            request_or_action_id=other_request, actor_user=other_reviewer, approve=False
        )
        response = Client().post(
            "/api/v1/check",
            data=json.dumps({"action": "kb.search", "arguments": {"q": "x"}}),
            content_type="application/json",
            HTTP_X_API_KEY=key.raw,
        )
        # Whatever the paused decision has written only shares the key of its organisation
        # and agent (foreign-key checks), so changing either row does not wait either.
        assert can_lock("accounts_organization", org_a.pk, "FOR NO KEY UPDATE")
        assert can_lock("agents_agent", agent_a.pk, "FOR NO KEY UPDATE")
        assert can_lock("accounts_plan", org_a.plan_id)
    assert decided.status == ApprovalRequest.Status.DENIED
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["decision"] == "allow"
