"""Row locks of the approval paths: a decision locks its request row and nothing else, and
takes its organisation's turn (approvals/turns.py), which only other decisions of that
organisation wait for.

PostgreSQL only (SQLite has no row locks). A decision runs in a thread and is paused inside
its transaction; the test's own connection then tries the rows the decision must leave
alone. ``NOWAIT`` and a short ``lock_timeout`` turn a wait on the paused decision into an
error at once, so the outcome does not depend on how fast the machine is: the paused
decision holds its locks until the test lets it go.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client

from accounts.models import Membership
from approvals import services, turns
from approvals.models import ApprovalRequest, ApprovalVote
from audit.models import AuditEntry
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


def waiting_for_a_turn(organization_id: int) -> int:
    """How many backends wait for the organisation's turn to decide."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s AND objid = %s AND objsubid = 2",
            [turns.DECISION_LOCK_NAMESPACE, organization_id],
        )
        return cursor.fetchone()[0]


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def other_organisation_request(org_a: Any, agent_a: Any) -> tuple[Any, ApprovalRequest]:
    """Olga, approver of another organisation on Acme's plan, and a request of hers."""
    other = OrganizationFactory(name="Other Co", plan=org_a.plan)
    olga = UserFactory(email="olga@example.com")
    MembershipFactory(user=olga, organization=other, role=Membership.Role.APPROVER)
    other_agent = agent_a.__class__.objects.create(organization=other, name="other-bot")
    return olga, request_create(other_agent)


def test_a_second_decision_of_the_organisation_waits_for_its_turn_then_goes_through(
    monkeypatch, settings, org_a, alice, bob, agent_a
):
    """While one decision of Acme is paused in its transaction, a second one waits for its
    turn and is decided once the first commits; another organisation's decision and an
    allowed check of Acme go through meanwhile."""
    settings.WARDEN_DECISION_LOCK_TIMEOUT = 120  # the wait ends with the pause, not the bound
    olga, other_request = other_organisation_request(org_a, agent_a)
    first, second = request_create(agent_a), request_create(agent_a)
    key = key_create(org_a, "agent", agent_a)
    errors: list[BaseException] = []

    def decide_second() -> None:
        try:
            services.approval_decide(request_or_action_id=second, actor_user=alice, approve=True)
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            connection.close()

    waiter = threading.Thread(target=decide_second)
    with decision_paused_after(monkeypatch, "_wake_on_commit", request=first, reviewer=bob):
        waiter.start()
        wait_until(lambda: waiting_for_a_turn(org_a.pk) == 1, "the second decision to wait")
        second.refresh_from_db()
        assert second.status == ApprovalRequest.Status.PENDING
        with lock_timeout("200ms"):
            decided = services.approval_decide(
                request_or_action_id=other_request, actor_user=olga, approve=False
            )
            response = Client().post(
                "/api/v1/check",
                data=json.dumps({"action": "kb.search", "arguments": {"q": "x"}}),
                content_type="application/json",
                HTTP_X_API_KEY=key.raw,
            )
        assert waiter.is_alive()  # still waiting: neither of those took Acme's turn
    waiter.join(60)
    assert not waiter.is_alive() and not errors, errors
    assert decided.status == ApprovalRequest.Status.DENIED
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["decision"] == "allow"
    second.refresh_from_db()
    assert second.status == ApprovalRequest.Status.APPROVED
    assert second.decided_by == alice
    for request, reviewer in ((first, bob), (second, alice)):
        assert list(
            ApprovalVote.objects.filter(request=request).values_list("user", flat=True)
        ) == [reviewer.pk]
        assert (
            AuditEntry.objects.filter(
                kind=AuditEntry.Kind.DECISION, action_id=request.action_id, decision="approve"
            ).count()
            == 1
        )


def test_a_decision_whose_turn_does_not_come_in_time_is_answered_busy_and_writes_nothing(
    monkeypatch, settings, org_a, bob, agent_a
):
    settings.WARDEN_DECISION_LOCK_TIMEOUT = 0.05
    first, second = request_create(agent_a), request_create(agent_a)
    key = key_create(org_a, "approver")  # Alice's
    with decision_paused_after(monkeypatch, "_wake_on_commit", request=first, reviewer=bob):
        response = Client().post(
            f"/api/v1/actions/{second.action_id}/approve",
            data="{}",
            content_type="application/json",
            HTTP_X_API_KEY=key.raw,
        )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, response.content
    assert response.json()["code"] == "busy"
    assert response["Retry-After"] == "1"
    second.refresh_from_db()
    assert second.status == ApprovalRequest.Status.PENDING
    assert not ApprovalVote.objects.filter(request=second).exists()
    assert not AuditEntry.objects.filter(
        kind=AuditEntry.Kind.DECISION, action_id=second.action_id
    ).exists()


def test_a_bulk_decision_that_does_not_get_its_turn_leaves_the_rest_undecided(
    monkeypatch, settings, org_a, alice, bob, agent_a
):
    """The first request that finds no turn is ``busy``; the others are not tried (each
    would wait as long again) and are ``busy`` too, all still pending."""
    settings.WARDEN_DECISION_LOCK_TIMEOUT = 0.05
    first = request_create(agent_a)
    others = [request_create(agent_a) for _ in range(3)]
    waits: list[int] = []
    take = turns.decision_turn_take

    def counted(*, organization_id: int) -> None:
        waits.append(organization_id)
        take(organization_id=organization_id)

    with decision_paused_after(monkeypatch, "_wake_on_commit", request=first, reviewer=bob):
        monkeypatch.setattr(turns, "decision_turn_take", counted)
        outcomes = services.approval_decide_bulk(
            organization=org_a,
            action_ids=[r.action_id for r in others],
            actor_user=alice,
            approve=True,
        )
    assert waits == [org_a.pk]
    assert [o.result for o in outcomes] == ["busy"] * len(others)
    assert ApprovalRequest.objects.filter(
        pk__in=[r.pk for r in others], status=ApprovalRequest.Status.PENDING
    ).count() == len(others)


def turn_is_taken(organization_id: int) -> bool:
    """Whether another transaction holds the organisation's turn (never waits)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)",
            [turns.DECISION_LOCK_NAMESPACE, organization_id],
        )
        return not cursor.fetchone()[0]


@pytest.mark.parametrize(
    ("path", "answer_step"),
    [
        ("/api/v1/actions/{}/approve", "approval_json"),
        ("/approve/{}", "approval_compat_status"),  # the Arden SDK's endpoint (COMPAT.md)
    ],
)
def test_an_api_decision_holds_its_turn_until_its_answer_is_built(
    monkeypatch, org_a, agent_a, path, answer_step
):
    """Through the API the turn covers the whole request: the reads that authorise the
    decision, the decision and the answer (approvals/turns.py ``decision_turn``)."""
    from approvals import api

    request = request_create(agent_a)
    key = key_create(org_a, "approver")
    reached, release = threading.Event(), threading.Event()
    real = getattr(api, answer_step)
    answers: list[Any] = []

    def paused(decided: ApprovalRequest) -> Any:
        reached.set()
        release.wait(60)
        return real(decided)

    def post() -> None:
        try:
            answers.append(
                Client().post(
                    path.format(request.action_id),
                    data="{}",
                    content_type="application/json",
                    HTTP_X_API_KEY=key.raw,
                )
            )
        finally:
            reached.set()
            connection.close()

    monkeypatch.setattr(api, answer_step, paused)
    thread = threading.Thread(target=post)
    thread.start()
    try:
        assert reached.wait(60), "the decision never reached its answer"
        assert turn_is_taken(org_a.pk)  # decided, answer in progress: still its turn
        request.refresh_from_db()
        assert request.status == ApprovalRequest.Status.PENDING  # not committed yet
    finally:
        release.set()
        thread.join(60)
    assert answers and answers[0].status_code == HTTPStatus.OK, answers
    assert answers[0].json()["status"] == "approved"
    assert not turn_is_taken(org_a.pk)


def test_the_queue_page_says_which_requests_a_busy_bulk_decision_left_undecided(
    monkeypatch, settings, org_a, alice, bob, agent_a
):
    from django.contrib.messages import get_messages
    from django.urls import reverse

    settings.WARDEN_DECISION_LOCK_TIMEOUT = 0.05
    first, other = request_create(agent_a), request_create(agent_a)
    client = Client()
    client.force_login(alice)
    with decision_paused_after(monkeypatch, "_wake_on_commit", request=first, reviewer=bob):
        response = client.post(
            reverse("approvals:queue-decide"),
            {"action_ids": [other.action_id], "decision": "approve", "notes": ""},
        )
    assert response.status_code == HTTPStatus.FOUND
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == [
        f"{other.action} ({other.action_id}): not decided: Other decisions of this "
        "organisation are being taken; nothing was decided. Try again."
    ]
    other.refresh_from_db()
    assert other.status == ApprovalRequest.Status.PENDING


def test_decisions_nested_in_one_transaction_take_the_turn_again_and_keep_its_lock_timeout(
    org_a, bob, agent_a
):
    """The turn is re-entrant within a transaction (an email link's decision runs inside the
    link's own), and its bound applies to the wait only: the connection's lock_timeout is
    what it was, inside the transaction and after it."""
    first, second = request_create(agent_a), request_create(agent_a)
    with lock_timeout("300ms"):
        with transaction.atomic():
            for request in (first, second):
                services.approval_decide(request_or_action_id=request, actor_user=bob, approve=True)
            with connection.cursor() as cursor:
                cursor.execute("SHOW lock_timeout")
                assert cursor.fetchone() == ("300ms",)
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone() == ("300ms",)
    assert (
        ApprovalRequest.objects.filter(
            pk__in=[first.pk, second.pk], status=ApprovalRequest.Status.APPROVED
        ).count()
        == 2
    )
