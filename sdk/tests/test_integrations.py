from __future__ import annotations

import sys
from typing import Any

import pytest
from fake_warden import FakeWarden

from wardenpy import PolicyDeniedError
from wardenpy.integrations.openai import ToolDispatcher


def issue_refund(amount: float, customer_id: str) -> dict[str, Any]:
    return {"refund_id": "re_1", "amount": amount, "customer_id": customer_id}


def test_the_dispatcher_accepts_openai_json_string_arguments(configured: FakeWarden) -> None:
    dispatcher = ToolDispatcher()
    dispatcher.register("issue_refund", issue_refund, tool_name="stripe.refund")
    result = dispatcher.run("issue_refund", '{"amount": 150.0, "customer_id": "cus_abc"}')
    assert result == {"refund_id": "re_1", "amount": 150.0, "customer_id": "cus_abc"}
    check = configured.calls("POST", "/api/v1/check")[0].body
    assert check["action"] == "stripe.refund"
    assert check["arguments"] == {"amount": 150.0, "customer_id": "cus_abc"}


def test_the_dispatcher_accepts_dict_arguments(configured: FakeWarden) -> None:
    dispatcher = ToolDispatcher()
    dispatcher.register("issue_refund", issue_refund)
    assert dispatcher.run("issue_refund", {"amount": 1, "customer_id": "c"})["amount"] == 1


def test_the_dispatcher_refuses_unknown_tools(configured: FakeWarden) -> None:
    with pytest.raises(KeyError):
        ToolDispatcher().run("nope", "{}")


def test_the_dispatcher_raises_policy_denied_for_blocked_tools(configured: FakeWarden) -> None:
    configured.set_policy("issue_refund", "block")
    dispatcher = ToolDispatcher()
    dispatcher.register("issue_refund", issue_refund)
    with pytest.raises(PolicyDeniedError):
        dispatcher.run("issue_refund", '{"amount": 500, "customer_id": "c"}')


def test_tool_message_turns_a_denial_into_text_for_the_model(configured: FakeWarden) -> None:
    configured.set_policy("issue_refund", "block")
    dispatcher = ToolDispatcher()
    dispatcher.register("issue_refund", issue_refund)
    call = {
        "id": "call_1",
        "function": {"name": "issue_refund", "arguments": '{"amount": 500, "customer_id": "c"}'},
    }
    message = dispatcher.tool_message(call)
    assert message["tool_call_id"] == "call_1"
    assert message["content"].startswith("Action denied by policy")


def test_langchain_tools_are_checked_under_their_action_name(configured: FakeWarden) -> None:
    tools = pytest.importorskip("langchain_core.tools")
    original = tools.StructuredTool.from_function(
        issue_refund, name="issue_refund", description="Refund a customer"
    )
    from wardenpy.integrations.langchain import guard_langchain_tool

    guarded = guard_langchain_tool(original, action="stripe.refund")
    assert guarded.name == "issue_refund"
    assert guarded.invoke({"amount": 3.0, "customer_id": "cus_1"})["amount"] == 3.0
    check = configured.calls("POST", "/api/v1/check")[0].body
    assert (check["action"], check["arguments"]) == (
        "stripe.refund",
        {"amount": 3.0, "customer_id": "cus_1"},
    )


def test_a_blocked_langchain_tool_does_not_run(configured: FakeWarden) -> None:
    tools = pytest.importorskip("langchain_core.tools")
    runs: list[float] = []

    def refund(amount: float) -> str:
        runs.append(amount)
        return "ok"

    from wardenpy.integrations.langchain import guard_langchain_tool

    configured.set_policy("refund", "block")
    guarded = guard_langchain_tool(tools.StructuredTool.from_function(refund, description="Refund"))
    with pytest.raises(PolicyDeniedError):
        guarded.invoke({"amount": 3.0})
    assert runs == []


def test_the_crewai_wrapper_says_how_to_install_crewai_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "crewai", None)
    from wardenpy.integrations.crewai import guard_crewai_tool

    with pytest.raises(ImportError, match=r"pip install 'wardenpy\[crewai\]'"):
        guard_crewai_tool(object())


def test_the_langchain_wrapper_says_how_to_install_langchain_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.tools", None)
    from wardenpy.integrations.langchain import guard_langchain_tool

    with pytest.raises(ImportError, match="langchain-core"):
        guard_langchain_tool(object())


def test_importing_wardenpy_does_not_import_the_frameworks() -> None:
    import subprocess

    code = (
        "import sys, wardenpy, wardenpy.integrations.langchain, "
        "wardenpy.integrations.crewai, wardenpy.integrations.openai; "
        "print(any(m.split('.')[0] in ('langchain_core', 'crewai', 'openai') "
        "for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
