"""The real ardenpy 0.5.7 and agentwarden 0.1.2 clients against a live Warden server."""

from __future__ import annotations

from datetime import timedelta

import ardenpy
import pytest
from agentwarden import AgentWarden
from agentwarden.exceptions import AgentNotFoundError, AuthenticationError
from ardenpy import ArdenClient, ArdenError, PolicyDeniedError
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from audit.models import AuditEntry
from tests.agents.conftest import add_rule
from tests.live import wait_until

pytestmark = pytest.mark.live


def issue_refund(amount: float, customer_id: str = "cus_1") -> str:
    return f"refunded {amount}"


def delete_users() -> str:
    return "deleted"


def search(query: str) -> str:
    return f"found {query}"


@pytest.fixture
def arden(live_server, keys):
    ardenpy.configure(
        api_key=keys.live, api_url=live_server.url, retry_attempts=1, poll_interval=0.2
    )
    yield ardenpy
    ardenpy.clear_session()


@pytest.fixture
def warden(live_server, keys):
    with AgentWarden(api_key=keys.org, base_url=live_server.url) as client:
        yield client


# --- ardenpy --------------------------------------------------------------------------------


def test_ardenpy_runs_an_allowed_tool(arden, refund_rules):
    assert arden.guard_tool("kb.search", search)("refunds") == "found refunds"


def test_ardenpy_refuses_a_blocked_tool(arden, refund_rules):
    guarded = arden.guard_tool("database.users.delete", delete_users)
    with pytest.raises(PolicyDeniedError, match="no deletes"):
        guarded()


def test_ardenpy_learns_no_policy_configured_and_runs_the_tool(arden, keys):
    response = ArdenClient().check_tool_call("email.send", [], {"to": "a@b.c"})
    assert response.decision.value == "allow"
    assert response.reason == "no_policy_configured"
    assert response.action_id
    assert arden.guard_tool("email.send", search)("x") == "found x"


def test_ardenpy_positional_amount_under_the_limit_is_allowed(arden, refund_rules):
    assert arden.guard_tool("stripe.refund", issue_refund)(50) == "refunded 50"


def test_ardenpy_amount_over_the_limit_becomes_a_pending_approval(arden, refund_rules, alice):
    denied: list[Exception] = []
    pending = arden.guard_tool(
        "stripe.refund",
        issue_refund,
        approval_mode="async",
        on_approval=lambda *a: None,
        on_denial=denied.append,
    )(150)
    assert isinstance(pending, ardenpy.PendingApproval)
    status = ArdenClient().get_action_status(pending.action_id)
    assert status.status.value == "pending"
    assert ApprovalRequest.objects.get(action_id=pending.action_id).arguments["amount"] == 150
    # Rejecting it ends the SDK's background poll (which would otherwise outlive the test).
    approval_decide(
        request_or_action_id=pending.action_id, actor_user=alice, approve=False, source="api"
    )
    (error,) = wait_until(lambda: denied, what="ardenpy's on_denial")
    assert isinstance(error, PolicyDeniedError)


def test_ardenpy_reads_an_expired_approval_as_denied(arden, refund_rules):
    response = ArdenClient().check_tool_call("stripe.refund", [], {"amount": 500})
    ApprovalRequest.objects.filter(action_id=response.action_id).update(status="expired")
    status = ArdenClient().get_action_status(response.action_id)
    assert status.status.value == "denied"
    assert "expired" in status.message


def test_ardenpy_reads_an_overdue_request_as_denied_before_the_expiry_task_runs(
    arden, refund_rules
):
    response = ArdenClient().check_tool_call("stripe.refund", [], {"amount": 500})
    ApprovalRequest.objects.filter(action_id=response.action_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    status = ArdenClient().get_action_status(response.action_id)
    assert status.status.value == "denied"
    assert "expired" in status.message
    assert ApprovalRequest.objects.get(action_id=response.action_id).status == "expired"


def test_ardenpy_running_total_blocks_past_the_count(arden, support_bot):
    add_rule(
        support_bot,
        name="two mails",
        action="email.bulk",
        effect="block",
        limit={"count": 2, "per": "1h"},
    )
    guarded = arden.guard_tool("email.bulk", search)
    guarded("a")
    guarded("b")
    with pytest.raises(PolicyDeniedError, match="3rd call"):
        guarded("c")


def test_ardenpy_sends_the_session_id(arden, keys):
    arden.set_session("conv-1")
    arden.guard_tool("kb.search", search)("x")
    assert AuditEntry.objects.get(kind="check").session_id == "conv-1"


def test_ardenpy_logs_token_usage_with_its_cost(arden, keys):
    answer = ArdenClient().log_token_usage("gpt-4o", 1_000_000, 0, session_id="s1")
    assert answer["total_tokens"] == 1_000_000
    assert answer["total_cost_usd"] == pytest.approx(2.5)


def test_ardenpy_with_a_bad_key_raises(live_server, keys):
    ardenpy.configure(api_key="wdn_live_nope", api_url=live_server.url, retry_attempts=1)
    with pytest.raises(ArdenError, match="401"):
        ArdenClient().check_tool_call("kb.search", [], {})


# --- agentwarden ----------------------------------------------------------------------------


def test_agentwarden_allows_a_call_under_the_limit(warden, refund_rules):
    result = warden.check("support-bot", "stripe.refund", {"amount": 50})
    assert result.allowed is True
    assert result.requires_approval is False


def test_agentwarden_reports_approval_needed_over_the_limit(warden, refund_rules):
    result = warden.check("support-bot", "stripe.refund", {"amount": 150})
    assert result.allowed is False
    assert result.requires_approval is True
    assert "exceeds max_amount 100" in result.reason


def test_agentwarden_blocks_a_blocked_action(warden, refund_rules, support_bot):
    result = warden.check(support_bot.public_id, "database.orders.delete", None)
    assert result.allowed is False
    assert result.requires_approval is False
    assert "no deletes" in result.reason


def test_agentwarden_no_rule_is_allowed_with_no_policy_configured(warden, keys):
    result = warden.check("support-bot", "email.send", {})
    assert result.allowed is True
    assert result.reason == "no_policy_configured"


def test_agentwarden_running_total_sums_amounts(warden, support_bot):
    add_rule(
        support_bot,
        name="budget",
        action="stripe.refund",
        effect="block",
        limit={"sum": "amount", "over": 100, "per": "1d"},
    )
    assert warden.check("support-bot", "stripe.refund", {"amount": 70}).allowed
    assert not warden.check("support-bot", "stripe.refund", {"amount": 40}).allowed


def test_agentwarden_unknown_agent_raises_agent_not_found(warden, keys):
    with pytest.raises(AgentNotFoundError):
        warden.check("ghost-bot", "kb.search", {})


def test_agentwarden_bad_key_raises_authentication_error(live_server, keys):
    with AgentWarden(api_key="wdn_org_nope", base_url=live_server.url) as client:  # noqa: SIM117
        with pytest.raises(AuthenticationError):
            client.check("support-bot", "kb.search", {})


def test_agentwarden_log_writes_an_audit_entry(warden, org_a):
    result = warden.log("support-bot", "stripe.refund", "success", {"amount": 5})
    assert result.id.startswith("log_")
    assert result.organization_id == org_a.public_id
    entry = AuditEntry.objects.get(public_id=result.id)
    assert entry.kind == AuditEntry.Kind.LOG
    assert entry.status == "success"
    assert entry.arguments == {"amount": 5}


def test_agentwarden_execute_runs_the_callback_and_logs_success(warden, refund_rules):
    assert warden.execute("support-bot", "kb.search", lambda: "ran", {"q": "x"}) == "ran"
    assert AuditEntry.objects.filter(kind="log", status="success").count() == 1
