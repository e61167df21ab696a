"""The detail page says what each reviewer did, in the past tense."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import plan

pytestmark = pytest.mark.django_db


def test_a_vote_reads_approved_by_the_reviewer(client, org_a, alice, bob, make_request):
    org_a.plan = plan("business")
    org_a.save()
    request = make_request(approvals_required=2)
    client.force_login(bob)
    client.post(reverse("approvals:decide", args=[request.action_id]), {"decision": "approve"})
    client.force_login(alice)
    page = client.get(reverse("approvals:detail", args=[request.action_id])).content.decode()
    assert "Approved by bob@example.com" in page
    assert "Approve by" not in page
