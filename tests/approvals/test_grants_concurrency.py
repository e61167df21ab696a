"""A grant's uses are counted exactly under concurrency: racing checks on PostgreSQL, from
real threads, spend exactly the uses there are (a conditional UPDATE, ``uses_left > 0``),
and a use rolls back with its check when the check decides again (running totals)."""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from agents import services as agents_services
from agents.models import LimitBucket
from approvals.models import ApprovalRequest, Grant
from approvals.services import approval_decide
from audit.models import AuditEntry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def check(key: str, arguments: dict[str, Any]) -> dict[str, Any]:
    response = Client().post(
        "/api/v1/check",
        data=json.dumps({"action": "stripe.refund", "arguments": arguments}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def race(key: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send the calls at once from as many threads; the answers, in any order."""
    barrier = threading.Barrier(len(calls))
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def send(arguments: dict[str, Any]) -> None:
        try:
            barrier.wait()
            answers.append(check(key, arguments))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return answers


def granted_bot(org_a: Any, alice: Any, bob: Any, **rule: Any) -> tuple[str, Grant]:
    """A bot whose refunds over 100 are held, and an amount grant of 5 uses up to 200."""
    bot = agents_services.agent_create(organization=org_a, actor=alice, name="refund-bot")
    agents_services.rule_create(
        organization=org_a,
        agent=bot,
        data={
            "name": "big refunds",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "approval": {"grants": ["amount"]},
            **rule,
        },
        actor=None,
    )
    _key, raw = agents_services.api_key_create(
        organization=org_a, kind="agent", agent=bot, environment="test", actor=None
    )
    held = check(raw, {"amount": 150})
    assert held["decision"] == "requires_approval"
    approval_decide(
        request_or_action_id=held["action_id"],
        actor_user=bob,
        approve=True,
        grant={"kind": "amount", "max_amount": 200, "uses": 5, "ttl": "1d"},
    )
    return raw, Grant.objects.get()


def test_racing_checks_spend_exactly_the_uses_of_a_grant(org_a, alice, bob):
    key, grant = granted_bot(org_a, alice, bob, max_amount=100)

    answers = race(key, [{"amount": 150}] * 16)

    decisions = [answer["decision"] for answer in answers]
    assert (decisions.count("allow"), decisions.count("requires_approval")) == (5, 11)
    grant.refresh_from_db()
    assert (grant.uses_left, grant.use_count) == (0, 5)
    # Each use named a different count of uses left: no two checks took the same use.
    left = sorted(a["reason"].rsplit(", ", 1)[1] for a in answers if a["decision"] == "allow")
    assert left == [f"{n} of 5 uses left" for n in range(5)]
    used = AuditEntry.objects.filter(
        kind="check", decision="allow", data__grant__id=grant.public_id
    )
    assert used.count() == 5
    assert ApprovalRequest.objects.filter(status="pending").count() == 11


def test_a_grant_use_rolls_back_with_a_check_that_decides_again_on_running_totals(
    org_a, alice, bob
):
    # Every call spends one budget (a count limit far away), so racing checks overtake each
    # other and decide again; a use of the grant must roll back with the attempt it was in.
    key, grant = granted_bot(org_a, alice, bob, max_amount=100, limit={"count": 1000, "per": "1d"})

    answers = race(key, [{"amount": 150}] * 12)

    decisions = [answer["decision"] for answer in answers]
    assert (decisions.count("allow"), decisions.count("requires_approval")) == (5, 7)
    grant.refresh_from_db()
    assert (grant.uses_left, grant.use_count) == (0, 5)
    # The budget counts the approved call and the grant's five, nothing more.
    assert sum(LimitBucket.objects.values_list("count", flat=True)) == 1 + 5
