from __future__ import annotations

import pytest
from fake_warden import AGENT_KEY, APPROVER_KEY, ORG_KEY, FakeWarden

import wardenpy
from wardenpy import ApprovalRequiredError, Client, PolicyDeniedError


@pytest.fixture
def org_client(fake: FakeWarden) -> Client:
    return Client(ORG_KEY, fake.url, retry_backoff=0.01)


def test_an_org_key_check_names_the_agent(fake: FakeWarden, org_client: Client) -> None:
    result = org_client.check("agt_support", "stripe.refund", {"amount": 5})
    assert result.allowed and bool(result)
    assert fake.calls("POST", "/api/v1/check")[0].body["agent"] == "agt_support"


def test_an_org_key_check_without_an_agent_is_refused_locally(
    fake: FakeWarden, org_client: Client
) -> None:
    with pytest.raises(wardenpy.WardenError, match="agent_id"):
        org_client.check(None, "stripe.refund")
    assert fake.requests == []


def test_execute_runs_an_allowed_callback_and_reports_success(
    fake: FakeWarden, org_client: Client
) -> None:
    assert org_client.execute("agt_support", "stripe.refund", lambda: 42, {"amount": 5}) == 42
    (action_id,) = fake.actions
    assert fake.wait_for_outcome(action_id)["status"] == "success"


def test_execute_raises_for_a_blocked_action_without_running(
    fake: FakeWarden, org_client: Client
) -> None:
    fake.set_policy("stripe.refund", "block")
    runs: list[int] = []
    with pytest.raises(PolicyDeniedError):
        org_client.execute("agt_support", "stripe.refund", lambda: runs.append(1))
    assert runs == []


def test_execute_raises_approval_required_with_the_action_id(
    fake: FakeWarden, org_client: Client
) -> None:
    fake.set_policy("stripe.refund", "requires_approval")
    with pytest.raises(ApprovalRequiredError) as err:
        org_client.execute("agt_support", "stripe.refund", lambda: 1)
    assert err.value.action_id in fake.actions


def test_log_posts_an_agentwarden_style_entry(fake: FakeWarden, org_client: Client) -> None:
    entry = org_client.log("agt_support", "stripe.refund", "success", {"amount": 5})
    assert fake.logs == [
        {
            "agent_id": "agt_support",
            "action": "stripe.refund",
            "status": "success",
            "context": {"amount": 5},
        }
    ]
    assert entry.organization_id == "org_alice"


def test_an_approver_key_client_can_approve_a_pending_action(fake: FakeWarden) -> None:
    fake.set_policy("stripe.refund", "requires_approval")
    action_id = Client(AGENT_KEY, fake.url).check(None, "stripe.refund").action_id
    state = Client(APPROVER_KEY, fake.url).approve(action_id, notes="ok")
    assert (state.status, state.notes) == ("approved", "ok")


def test_approve_sends_a_grant_only_when_one_is_given(fake: FakeWarden) -> None:
    fake.set_policy("stripe.refund", "requires_approval")
    agent = Client(AGENT_KEY, fake.url)
    first, second = agent.check(None, "stripe.refund"), agent.check(None, "stripe.refund")
    approver = Client(APPROVER_KEY, fake.url)

    approver.approve(first.action_id, notes="ok")
    approver.approve(second.action_id, grant={"kind": "identical", "ttl": "1h"})

    assert fake.decision_bodies == [
        {"notes": "ok"},
        {"notes": None, "grant": {"kind": "identical", "ttl": "1h"}},
    ]


def test_log_token_usage_posts_in_the_background_with_the_session(
    configured: FakeWarden,
) -> None:
    wardenpy.set_session("conv_7")
    assert wardenpy.log_token_usage("gpt-4o", 100, 20) is None
    assert wardenpy.flush(5)
    assert configured.token_usage == [
        {"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 20, "session_id": "conv_7"}
    ]


def test_sessions_do_not_leak_between_threads(configured: FakeWarden) -> None:
    import threading

    wardenpy.set_session("main")
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(wardenpy.get_session()))
    thread.start()
    thread.join()
    assert seen == [None] and wardenpy.get_session() == "main"
