from __future__ import annotations

import asyncio

import pytest
from fake_warden import FakeWarden

import wardenpy
from wardenpy import PolicyDeniedError


async def refund(amount: float, customer_id: str) -> str:
    await asyncio.sleep(0)
    return f"refunded {amount} to {customer_id}"


def test_a_coroutine_tool_gets_a_coroutine_wrapper(configured: FakeWarden) -> None:
    safe = wardenpy.guard_tool("stripe.refund", refund)
    assert asyncio.iscoroutinefunction(safe)
    assert asyncio.run(safe(5.0, "cus_1")) == "refunded 5.0 to cus_1"


def test_a_coroutine_tool_reports_its_outcome(configured: FakeWarden) -> None:
    asyncio.run(wardenpy.guard_tool("stripe.refund", refund)(5.0, "cus_1"))
    (action_id,) = configured.actions
    assert configured.wait_for_outcome(action_id)["status"] == "success"


def test_waiting_for_approval_does_not_block_the_event_loop(configured: FakeWarden) -> None:
    """The reviewer runs as another task on the SAME loop: if the wait blocked the loop,
    the decision would never be made and the call would time out."""
    configured.set_policy("stripe.refund", "requires_approval")
    safe = wardenpy.guard_tool("stripe.refund", refund)

    async def reviewer() -> None:
        while not configured.actions:
            await asyncio.sleep(0.01)
        (action_id,) = configured.actions
        configured.decide(action_id, "approved")

    async def main() -> list[object]:
        return await asyncio.gather(safe(150.0, "cus_abc"), reviewer())

    wardenpy.configure(
        api_key=wardenpy.get_config().api_key,
        api_url=configured.url,
        max_poll_time=5.0,
        poll_interval=0.05,
    )
    result, _ = asyncio.run(main())
    assert result == "refunded 150.0 to cus_abc"


def test_a_blocked_coroutine_tool_raises_without_running(configured: FakeWarden) -> None:
    configured.set_policy("stripe.refund", "block")
    runs: list[float] = []

    async def tool(amount: float) -> None:
        runs.append(amount)

    with pytest.raises(PolicyDeniedError):
        asyncio.run(wardenpy.guard_tool("stripe.refund", tool)(500.0))
    assert runs == []


def test_async_mode_runs_a_coroutine_callback_on_the_callers_loop(
    configured: FakeWarden,
) -> None:
    configured.set_policy("stripe.refund", "requires_approval")

    async def main() -> str:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()

        async def on_approval(event: wardenpy.WebhookEvent) -> None:
            done.set_result(await refund(event.context["amount"], event.context["customer_id"]))

        safe = wardenpy.guard_tool(
            "stripe.refund",
            refund,
            approval_mode="async",
            on_approval=on_approval,
            on_denial=lambda e: None,
        )
        pending = await safe(150.0, "cus_abc")
        configured.decide(pending.action_id, "approved")
        return await asyncio.wait_for(done, 10)

    assert asyncio.run(main()) == "refunded 150.0 to cus_abc"
