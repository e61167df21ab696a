"""The real wardenpy SDK against a live Warden server: real HTTP, real threads, no fakes.

The decisions are taken by a reviewer (Bob) through ``approval_decide`` from the test thread
while the SDK waits in another thread.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import wardenpy
from tests.live import free_port, wait_until
from tests.sdk.conftest import action_json, decide, in_thread, outcome_of, pending_action_id
from wardenpy.integrations.openai import ToolDispatcher

pytestmark = pytest.mark.live


# --- allow and block --------------------------------------------------------------------------


def test_an_allowed_call_runs_the_tool_and_returns_its_result(sdk, refund, calls):
    tool = wardenpy.guard_tool("stripe.refund", refund)
    assert tool(50.0, customer_id="cus_abc") == "refunded 50.0 to cus_abc"
    assert calls.made == [{"amount": 50.0, "customer_id": "cus_abc"}]


def test_an_allowed_call_reports_success_to_the_server(live_server, sdk, keys, refund):
    wardenpy.guard_tool("stripe.refund", refund)(50.0, customer_id="cus_abc")
    (entry,) = _checks_of("stripe.refund")
    outcome = wait_until(
        lambda: outcome_of(live_server, keys.test, entry), what="the outcome on the server"
    )
    assert outcome["status"] == "success"


def test_the_server_sees_positional_arguments_by_parameter_name(live_server, sdk, keys, refund):
    wardenpy.guard_tool("stripe.refund", refund)(50.0, "cus_abc")
    (entry,) = _checks_of("stripe.refund")
    assert action_json(live_server, keys.test, entry)["arguments"] == {
        "amount": 50.0,
        "customer_id": "cus_abc",
    }


def test_a_failing_allowed_tool_reports_failed_with_the_error(live_server, sdk, keys):
    def search(query: str) -> str:
        raise RuntimeError("index offline")

    with pytest.raises(RuntimeError):
        wardenpy.guard_tool("kb.search", search)("refund policy")
    (entry,) = _checks_of("kb.search")
    outcome = wait_until(
        lambda: outcome_of(live_server, keys.test, entry), what="the outcome on the server"
    )
    assert outcome["status"] == "failed"
    assert "index offline" in outcome["error"]


def test_a_blocked_call_raises_policy_denied_with_reason_and_rule(sdk, calls):
    def delete_user(user_id: str) -> None:
        calls.record(user_id=user_id)

    with pytest.raises(wardenpy.PolicyDeniedError) as denied:
        wardenpy.guard_tool("database.users.delete", delete_user)("usr_1")
    assert denied.value.rule == "no deletes"
    assert denied.value.reason
    assert denied.value.status == "blocked"


def test_a_blocked_call_never_runs_the_tool(sdk, calls):
    def delete_user(user_id: str) -> None:
        calls.record(user_id=user_id)

    with pytest.raises(wardenpy.PolicyDeniedError):
        wardenpy.guard_tool("database.users.delete", delete_user)("usr_1")
    assert calls.made == []


# --- wait mode --------------------------------------------------------------------------------


def test_wait_mode_runs_the_tool_once_a_reviewer_approves(sdk, refund, calls, bob):
    call = in_thread(wardenpy.guard_tool("stripe.refund", refund), 150.0, customer_id="cus_abc")
    action_id = pending_action_id()
    decide(action_id, bob, approve=True, notes="customer verified")
    assert call.result() == "refunded 150.0 to cus_abc"
    assert calls.made == [{"amount": 150.0, "customer_id": "cus_abc"}]


def test_wait_mode_does_not_run_the_tool_before_the_decision(sdk, refund, calls, bob):
    call = in_thread(wardenpy.guard_tool("stripe.refund", refund), 150.0, customer_id="cus_abc")
    action_id = pending_action_id()
    call.thread.join(0.5)
    made_before = list(calls.made)
    decide(action_id, bob, approve=True)
    call.result()
    assert made_before == []


def test_an_approved_action_claimed_by_two_threads_runs_once(sdk, refund, calls, bob):
    tool = wardenpy.guard_tool("stripe.refund", refund)
    first = in_thread(tool, 150.0, customer_id="cus_abc")
    action_id = pending_action_id()
    second = in_thread(tool.resume, action_id, 150.0, customer_id="cus_abc")
    second.thread.join(0.5)  # both are long-polling now
    decide(action_id, bob, approve=True)
    outcomes = []
    for call in (first, second):
        try:
            outcomes.append(call.result())
        except wardenpy.AlreadyClaimedError as error:
            outcomes.append(error)
    assert len(calls.made) == 1
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyClaimedError", "str"]


def test_the_loser_of_a_claim_race_sees_409_already_claimed(sdk, refund, bob):
    tool = wardenpy.guard_tool("stripe.refund", refund)
    first = in_thread(tool, 150.0, customer_id="cus_abc")
    action_id = pending_action_id()
    decide(action_id, bob, approve=True)
    first.result()
    with pytest.raises(wardenpy.AlreadyClaimedError) as lost:
        tool.resume(action_id, 150.0, customer_id="cus_abc")
    assert lost.value.status_code == 409
    assert lost.value.code == "already_claimed"


def _approved_elsewhere(refund, bob) -> str:
    """An approved action whose call was made earlier (webhook mode: nothing claimed it)."""
    made_earlier = wardenpy.guard_tool(
        "stripe.refund", refund, "webhook", on_approval=print, on_denial=print
    )
    action_id = made_earlier(150.0, customer_id="cus_abc").action_id
    decide(action_id, bob, approve=True)
    return action_id


def test_resuming_an_approved_action_with_its_arguments_runs_the_tool(sdk, refund, calls, bob):
    action_id = _approved_elsewhere(refund, bob)
    tool = wardenpy.guard_tool("stripe.refund", refund)
    assert tool.resume(action_id, 150.0, customer_id="cus_abc") == "refunded 150.0 to cus_abc"
    assert calls.made == [{"amount": 150.0, "customer_id": "cus_abc"}]


def test_resuming_an_approved_action_with_other_arguments_does_not_run_the_tool(
    sdk, refund, calls, bob
):
    action_id = _approved_elsewhere(refund, bob)
    tool = wardenpy.guard_tool("stripe.refund", refund)
    with pytest.raises(wardenpy.PolicyDeniedError) as refused:
        tool.resume(action_id, 9999.0, customer_id="cus_evil")
    assert "arguments" in str(refused.value)
    assert calls.made == []


def test_a_claimed_approved_call_reports_success(live_server, sdk, keys, refund, bob):
    call = in_thread(wardenpy.guard_tool("stripe.refund", refund), 150.0, customer_id="cus_abc")
    action_id = pending_action_id()
    decide(action_id, bob, approve=True)
    call.result()
    outcome = wait_until(
        lambda: outcome_of(live_server, keys.test, action_id), what="the outcome on the server"
    )
    assert outcome["status"] == "success"
    assert action_json(live_server, keys.test, action_id)["claimed_at"]


def test_a_denial_raises_policy_denied_with_the_reviewers_notes(sdk, refund, calls, bob):
    call = in_thread(wardenpy.guard_tool("stripe.refund", refund), 150.0, customer_id="cus_abc")
    decide(pending_action_id(), bob, approve=False, notes="not this customer")
    with pytest.raises(wardenpy.PolicyDeniedError) as denied:
        call.result()
    assert denied.value.notes == "not this customer"
    assert denied.value.status == "denied"
    assert calls.made == []


def test_a_request_nobody_decides_in_time_raises_policy_denied_expired(sdk, calls):
    def quick_refund(amount: float) -> None:
        calls.record(amount=amount)

    with pytest.raises(wardenpy.PolicyDeniedError) as denied:
        wardenpy.guard_tool("stripe.quick_refund", quick_refund)(20.0)
    assert denied.value.status == "expired"
    assert calls.made == []


def test_max_poll_time_shorter_than_the_deadline_raises_approval_timeout(
    live_server, keys, refund, calls
):
    wardenpy.configure(api_key=keys.test, api_url=live_server.url, max_poll_time=1)
    with pytest.raises(wardenpy.ApprovalTimeoutError) as timed_out:
        wardenpy.guard_tool("stripe.refund", refund)(150.0, customer_id="cus_abc")
    assert timed_out.value.timeout == 1
    assert timed_out.value.action_id == pending_action_id()
    assert calls.made == []


# --- async mode -------------------------------------------------------------------------------


def test_async_mode_returns_pending_approval_at_once(sdk, refund):
    tool = wardenpy.guard_tool("stripe.refund", refund, "async", on_approval=print, on_denial=print)
    pending = tool(150.0, customer_id="cus_abc")
    assert isinstance(pending, wardenpy.PendingApproval)
    assert pending.action_id == pending_action_id()


def test_async_mode_calls_on_approval_with_the_arguments_in_the_context(sdk, refund, bob):
    approved: list[wardenpy.WebhookEvent] = []
    tool = wardenpy.guard_tool(
        "stripe.refund", refund, "async", on_approval=approved.append, on_denial=print
    )
    pending = tool(150.0, customer_id="cus_abc")
    decide(pending.action_id, bob, approve=True, notes="ok")
    (event,) = wait_until(lambda: approved, what="on_approval to be called")
    assert event.action_id == pending.action_id
    assert event.context == {"amount": 150.0, "customer_id": "cus_abc"}


def test_async_mode_calls_on_denial_with_the_reviewers_notes(sdk, refund, bob):
    denied: list[wardenpy.WebhookEvent] = []
    tool = wardenpy.guard_tool(
        "stripe.refund", refund, "async", on_approval=print, on_denial=denied.append
    )
    pending = tool(150.0, customer_id="cus_abc")
    decide(pending.action_id, bob, approve=False, notes="fraud risk")
    (event,) = wait_until(lambda: denied, what="on_denial to be called")
    assert event.event_type == "action_denied"
    assert event.notes == "fraud risk"


def test_async_mode_without_callbacks_raises_before_any_request(live_server, keys, refund):
    wardenpy.configure(api_key=keys.test, api_url=live_server.url)
    with pytest.raises(wardenpy.WardenError):
        wardenpy.guard_tool("stripe.refund", refund, "async", on_approval=print)
    assert _checks_of("stripe.refund") == []


# --- coroutine tools --------------------------------------------------------------------------


def test_an_allowed_coroutine_tool_is_awaited(sdk, calls):
    async def search(query: str) -> str:
        await asyncio.sleep(0)
        calls.record(query=query)
        return f"results for {query}"

    tool = wardenpy.guard_tool("kb.search", search)
    assert asyncio.run(tool("refund policy")) == "results for refund policy"
    assert calls.made == [{"query": "refund policy"}]


def test_an_approved_coroutine_tool_runs_once_after_the_decision(sdk, calls, bob):
    async def refund(amount: float, customer_id: str) -> str:
        calls.record(amount=amount, customer_id=customer_id)
        return "done"

    tool = wardenpy.guard_tool("stripe.refund", refund)
    call = in_thread(asyncio.run, tool(150.0, customer_id="cus_abc"))
    decide(pending_action_id(), bob, approve=True)
    assert call.result() == "done"
    assert calls.made == [{"amount": 150.0, "customer_id": "cus_abc"}]


def test_the_event_loop_keeps_running_while_a_coroutine_tool_awaits_approval(sdk, bob):
    async def refund(amount: float, customer_id: str) -> str:
        return "done"

    tool = wardenpy.guard_tool("stripe.refund", refund)

    async def main() -> tuple[str, int]:
        ticks = 0
        task = asyncio.create_task(tool(150.0, customer_id="cus_abc"))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.05)
        return await task, ticks

    call = in_thread(asyncio.run, main())
    action_id = pending_action_id()
    call.thread.join(0.5)
    decide(action_id, bob, approve=True)
    result, ticks = call.result()
    assert result == "done"
    assert ticks > 1


# --- OpenAI dispatcher ------------------------------------------------------------------------


def test_the_openai_dispatcher_runs_an_allowed_call_from_json_arguments(
    live_server, sdk, keys, refund, calls
):
    dispatcher = ToolDispatcher()
    dispatcher.register("issue_refund", refund, tool_name="stripe.refund")
    result = dispatcher.run("issue_refund", json.dumps({"amount": 40, "customer_id": "cus_1"}))
    assert result == "refunded 40 to cus_1"
    (entry,) = _checks_of("stripe.refund")
    assert action_json(live_server, keys.test, entry)["arguments"] == {
        "amount": 40,
        "customer_id": "cus_1",
    }


def test_the_openai_dispatcher_turns_a_block_into_a_tool_message(sdk, calls):
    def delete_user(user_id: str) -> None:
        calls.record(user_id=user_id)

    dispatcher = ToolDispatcher()
    dispatcher.register("delete_user", delete_user, tool_name="database.users.delete")
    call = {"id": "call_1", "function": {"name": "delete_user", "arguments": '{"user_id": "u1"}'}}
    message = dispatcher.tool_message(call)
    assert message["tool_call_id"] == "call_1"
    assert message["content"].startswith("Action denied by policy")
    assert calls.made == []


def test_the_openai_dispatcher_waits_for_approval_then_runs(sdk, refund, calls, bob):
    dispatcher = ToolDispatcher()
    dispatcher.register("issue_refund", refund, tool_name="stripe.refund")
    call = in_thread(dispatcher.run, "issue_refund", '{"amount": 150, "customer_id": "cus_2"}')
    decide(pending_action_id(), bob, approve=True)
    assert call.result() == "refunded 150 to cus_2"
    assert calls.made == [{"amount": 150, "customer_id": "cus_2"}]


# --- the server cannot be reached -------------------------------------------------------------


def test_an_unreachable_server_fails_closed_with_server_unreachable(calls, refund):
    wardenpy.configure(
        api_key="wdn_test_unreachable",
        api_url=f"http://127.0.0.1:{free_port()}",
        retry_attempts=1,
        retry_backoff=0,
        timeout=2,
    )
    with pytest.raises(wardenpy.ServerUnreachableError):
        wardenpy.guard_tool("stripe.refund", refund)(10.0, customer_id="cus_abc")
    assert calls.made == []


# --- Client with an org key -------------------------------------------------------------------


@pytest.fixture
def org_client(live_server, keys):
    with wardenpy.Client(api_key=keys.org, api_url=live_server.url, retry_attempts=1) as client:
        yield client
        wardenpy.flush(5)


def test_an_org_key_checks_for_the_agent_it_names(org_client, support_bot):
    result = org_client.check("support-bot", "kb.search", {"query": "refunds"})
    assert result.allowed
    assert result.environment == "live"
    assert _checks_of("kb.search", agent=support_bot) == [result.action_id]


def test_an_org_key_check_of_a_blocked_action_is_falsy(org_client):
    result = org_client.check("support-bot", "database.users.delete", {"user_id": "u1"})
    assert not result
    assert result.rule == "no deletes"


def test_an_org_key_logs_an_entry_for_the_agent(org_client, support_bot):
    from audit.models import AuditEntry

    logged = org_client.log("support-bot", "email.send", "success", {"to": "cus_1"})
    assert logged.status == "success"
    assert AuditEntry.objects.filter(
        kind=AuditEntry.Kind.LOG, agent=support_bot, action="email.send"
    ).exists()


def test_an_org_key_execute_runs_the_callback_and_reports_success(live_server, org_client, keys):
    assert org_client.execute("support-bot", "kb.search", lambda: 42, {"query": "q"}) == 42
    (entry,) = _checks_of("kb.search")
    outcome = wait_until(
        lambda: outcome_of(live_server, keys.org, entry), what="the outcome on the server"
    )
    assert outcome["status"] == "success"


def test_an_org_key_execute_of_an_action_needing_approval_does_not_run(org_client, calls):
    with pytest.raises(wardenpy.ApprovalRequiredError) as required:
        org_client.execute("support-bot", "stripe.refund", lambda: calls.record(), {"amount": 500})
    assert required.value.action_id == pending_action_id()
    assert calls.made == []


def _checks_of(action: str, agent=None) -> list[str]:
    from audit.models import AuditEntry

    entries = AuditEntry.objects.filter(kind=AuditEntry.Kind.CHECK, action=action)
    if agent is not None:
        entries = entries.filter(agent=agent)
    return list(entries.order_by("created_at").values_list("public_id", flat=True))
