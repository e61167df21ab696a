from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
from typing import Any

import pytest
from fake_warden import FakeWarden

import wardenpy
from wardenpy import PolicyDeniedError, WardenError


def issue_refund(amount: float, customer_id: str, currency: str = "usd") -> dict[str, Any]:
    return {"refund_id": "re_1", "amount": amount, "customer_id": customer_id}


def test_positional_arguments_are_bound_to_parameter_names() -> None:
    assert wardenpy.bind_arguments(issue_refund, (150.0,), {"customer_id": "cus_abc"}) == {
        "amount": 150.0,
        "customer_id": "cus_abc",
        "currency": "usd",
    }


def test_star_args_become_a_list_and_star_kwargs_are_merged() -> None:
    def tool(a: int, *rest: int, **extra: Any) -> None: ...

    assert wardenpy.bind_arguments(tool, (1, 2, 3), {"flag": True}) == {
        "a": 1,
        "rest": [2, 3],
        "flag": True,
    }


def test_values_are_made_json_safe() -> None:
    @dataclasses.dataclass
    class Customer:
        id: str

    def tool(when: dt.date, amount: decimal.Decimal, who: Customer, tags: set[str]) -> None: ...

    bound = wardenpy.bind_arguments(
        tool, (dt.date(2026, 1, 2), decimal.Decimal("12.50"), Customer("c1"), {"b", "a"}), {}
    )
    assert bound == {"when": "2026-01-02", "amount": 12.5, "who": {"id": "c1"}, "tags": ["a", "b"]}


def test_arguments_that_do_not_fit_raise_type_error_before_any_request(
    configured: FakeWarden,
) -> None:
    safe = wardenpy.guard_tool("stripe.refund", issue_refund)
    with pytest.raises(TypeError):
        safe(1.0, 2.0, 3.0, 4.0)
    assert configured.calls("POST", "/api/v1/check") == []


def test_the_check_sends_positional_arguments_by_name(configured: FakeWarden) -> None:
    safe = wardenpy.guard_tool("stripe.refund", issue_refund)
    safe(150.0, customer_id="cus_abc")
    (check,) = configured.calls("POST", "/api/v1/check")
    assert check.body["action"] == "stripe.refund"
    assert check.body["arguments"] == {"amount": 150.0, "customer_id": "cus_abc", "currency": "usd"}


def test_an_allowed_call_runs_once_and_returns_its_result(configured: FakeWarden) -> None:
    runs: list[float] = []

    def refund(amount: float) -> str:
        runs.append(amount)
        return "done"

    assert wardenpy.guard_tool("stripe.refund", refund)(10.0) == "done"
    assert runs == [10.0]


def test_an_allowed_call_reports_success_to_the_server(configured: FakeWarden) -> None:
    wardenpy.guard_tool("stripe.refund", issue_refund)(10.0, "cus_1")
    (action_id,) = configured.actions
    assert configured.wait_for_outcome(action_id)["status"] == "success"


def test_a_failing_allowed_call_reports_failed_with_the_error_and_reraises(
    configured: FakeWarden,
) -> None:
    def broken(amount: float) -> None:
        raise RuntimeError("card declined")

    with pytest.raises(RuntimeError, match="card declined"):
        wardenpy.guard_tool("stripe.refund", broken)(10.0)
    (action_id,) = configured.actions
    outcome = configured.wait_for_outcome(action_id)
    assert outcome["status"] == "failed"
    assert "card declined" in outcome["error"]


def test_a_blocked_call_never_runs_and_raises_with_reason_and_rule(
    configured: FakeWarden,
) -> None:
    configured.set_policy("stripe.refund", "block")
    runs: list[float] = []

    with pytest.raises(PolicyDeniedError) as err:
        wardenpy.guard_tool("stripe.refund", lambda amount: runs.append(amount))(500.0)
    assert runs == []
    assert (err.value.reason, err.value.rule) == ("blocked by rule", "refund-limit")
    assert err.value.action_id in configured.actions


def test_the_guard_decorator_checks_under_the_given_name(configured: FakeWarden) -> None:
    @wardenpy.guard("email.send")
    def send(to: str) -> str:
        return f"sent to {to}"

    assert send("a@example.com") == "sent to a@example.com"
    assert configured.calls("POST", "/api/v1/check")[0].body["action"] == "email.send"
    assert send.__name__ == "send"


def test_the_session_id_is_attached_to_every_check(configured: FakeWarden) -> None:
    safe = wardenpy.guard_tool("stripe.refund", issue_refund)
    with wardenpy.session("conv_42"):
        safe(1.0, "cus_1")
    safe(1.0, "cus_1")
    first, second = configured.calls("POST", "/api/v1/check")
    assert first.body["session_id"] == "conv_42"
    assert "session_id" not in second.body


@pytest.mark.parametrize("mode", ["async", "webhook"])
def test_async_and_webhook_modes_without_callbacks_fail_at_guard_time(
    fake: FakeWarden, mode: str
) -> None:
    with pytest.raises(WardenError, match="on_approval and on_denial"):
        wardenpy.guard_tool("stripe.refund", issue_refund, approval_mode=mode, on_approval=print)
    assert fake.requests == []


def test_an_unknown_approval_mode_is_refused() -> None:
    with pytest.raises(wardenpy.ConfigurationError) as err:
        wardenpy.guard_tool("x", issue_refund, approval_mode="later")
    assert err.value.setting == "approval_mode"


def test_with_an_org_key_the_guard_names_its_agent(fake: FakeWarden) -> None:
    from fake_warden import ORG_KEY

    wardenpy.configure(api_key=ORG_KEY, api_url=fake.url)
    assert wardenpy.guard_tool("stripe.refund", lambda: "ran", agent="support-bot")() == "ran"
    assert fake.calls("POST", "/api/v1/check")[0].body["agent"] == "support-bot"
