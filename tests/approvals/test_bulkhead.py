"""The decision bulkhead (approvals/bulkhead.py): a bounded number of one organisation's
decisions at once per process; the rest wait for a slot, then get a JSON 503 "busy"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

import pytest

from agents.models import Agent
from approvals.bulkhead import DecisionsBusy, decision_slot
from approvals.models import ApprovalRequest, ApprovalVote
from approvals.services import approval_decide, approval_decide_bulk
from tests.approvals.conftest import key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_slot_no_wait(settings):
    settings.WARDEN_DECISION_CONCURRENCY = 1
    settings.WARDEN_DECISION_WAIT = 0


@contextmanager
def slot_taken_elsewhere(organization_id: int) -> Iterator[None]:
    """Another thread holds one of the organisation's decision slots for the block."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with decision_slot(organization_id=organization_id):
            taken.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(30)
    try:
        yield
    finally:
        done.set()
        thread.join(30)


def test_a_decision_without_a_free_slot_is_a_json_503_busy_and_decides_nothing(
    one_slot_no_wait, key_client, keys, pending
):
    with slot_taken_elsewhere(pending.organization_id):
        response = key_client(keys["approver"]).post(
            f"/api/v1/actions/{pending.action_id}/approve", {}, format="json"
        )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "busy"
    assert response["Retry-After"] == "1"
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.PENDING
    assert not ApprovalVote.objects.filter(request=pending).exists()


def test_the_decision_goes_through_once_the_slot_is_free(
    one_slot_no_wait, key_client, keys, pending
):
    with slot_taken_elsewhere(pending.organization_id):
        pass
    response = key_client(keys["approver"]).post(
        f"/api/v1/actions/{pending.action_id}/approve", {}, format="json"
    )
    assert response.status_code == HTTPStatus.OK
    assert response.json()["status"] == "approved"


def test_a_busy_organisation_does_not_hold_up_another_organisations_decision(
    one_slot_no_wait, org_c, charlie, make_request, pending
):
    other = make_request(agent=Agent.objects.create(organization=org_c, name="c-bot"))
    with slot_taken_elsewhere(pending.organization_id):
        decided = approval_decide(request_or_action_id=other, actor_user=charlie, approve=True)
    assert decided.status == ApprovalRequest.Status.APPROVED


def test_a_bulk_decision_takes_one_slot_for_everything_it_decides(
    one_slot_no_wait, org_a, bob, make_request
):
    requests = [make_request(), make_request()]
    outcomes = approval_decide_bulk(
        organization=org_a,
        action_ids=[r.action_id for r in requests],
        actor_user=bob,
        approve=True,
    )
    assert [o.result for o in outcomes] == ["decided", "decided"]


def test_a_bulk_decision_is_refused_whole_when_the_organisation_is_busy(
    one_slot_no_wait, org_a, bob, make_request
):
    request = make_request()
    with slot_taken_elsewhere(org_a.pk), pytest.raises(DecisionsBusy):
        approval_decide_bulk(
            organization=org_a, action_ids=[request.action_id], actor_user=bob, approve=True
        )
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING


def test_a_concurrency_of_zero_sets_no_bound(settings, org_a, bob, pending):
    settings.WARDEN_DECISION_CONCURRENCY = 0
    settings.WARDEN_DECISION_WAIT = 0
    with slot_taken_elsewhere(org_a.pk):
        decided = approval_decide(request_or_action_id=pending, actor_user=bob, approve=True)
    assert decided.status == ApprovalRequest.Status.APPROVED


def test_an_approver_key_of_another_organisation_still_gets_404_from_a_busy_one(
    one_slot_no_wait, key_client, org_c, pending
):
    """The slot is the request's organisation's: an outsider learns nothing from it (404
    as ever, whether that organisation is busy or not)."""
    with slot_taken_elsewhere(pending.organization_id):
        busy = key_client(key_create(org_c, "approver")).post(
            f"/api/v1/actions/{pending.action_id}/approve", {}, format="json"
        )
    assert busy.status_code == HTTPStatus.NOT_FOUND
