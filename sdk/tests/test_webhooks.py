from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fake_warden import AGENT_KEY, FakeWarden

import wardenpy
from wardenpy import WebhookEvent, handle_webhook, register_handler, verify_webhook_signature
from wardenpy import webhooks as wh

STANDARD_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PLAIN_SECRET = "plain-signing-key"

CANONICAL = {
    "action_id": "act_9",
    "agent_id": "agt_1",
    "agent_name": "support-bot",
    "action": "stripe.refund",
    "arguments": {"amount": 150.0, "customer_id": "cus_abc"},
    "status": "approved",
    "environment": "test",
    "session_id": None,
    "rule": "refund-limit",
    "reason": "over 100",
    "requested_at": "2026-01-01T00:00:00Z",
    "expires_at": None,
    "decided_at": "2026-01-01T00:01:00Z",
    "decided_by": "user_bob",
    "notes": "verified",
}


def standard_delivery(
    event_type: str = "approval.approved",
    data: dict[str, Any] | None = None,
    event_id: str = "evt_std1",
    ts: int | None = None,
    secret: str = STANDARD_SECRET,
) -> tuple[bytes, dict[str, str]]:
    ts = int(time.time()) if ts is None else ts
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "timestamp": "2026-01-01T00:01:00Z",
            "data": data or CANONICAL,
        }
    ).encode()
    return body, {
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": wh.sign_standard(event_id, ts, body, secret),
    }


def arden_delivery(
    event_type: str = "action_approved",
    notes: str | None = "verified",
    event_id: str = "evt_ard1",
    ts: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    ts = int(time.time()) if ts is None else ts
    body = json.dumps(
        {
            "event_type": event_type,
            "event_id": event_id,
            "action": {
                "action_id": "act_9",
                "tool_name": "stripe.refund",
                "context": {"amount": 150.0, "customer_id": "cus_abc"},
            },
            "approval": {"admin_user_id": "user_bob", "notes": notes},
        }
    ).encode()
    return body, {
        "X-Arden-Timestamp": str(ts),
        "X-Arden-Event-Id": event_id,
        "X-Arden-Signature": wh.sign_hex(ts, body, PLAIN_SECRET),
    }


def agentwarden_delivery(
    event: str = "approval.approved", event_id: str = "evt_aw1", ts: int | None = None
) -> tuple[bytes, dict[str, str]]:
    ts = int(time.time()) if ts is None else ts
    body = json.dumps(
        {
            "id": event_id,
            "event": event,
            "timestamp": "2026-01-01T00:01:00",
            "data": {
                "approval_id": "act_9",
                "agent_id": "agt_1",
                "action": "stripe.refund",
                "status": "approved" if event == "approval.approved" else "rejected",
                "context": {"amount": 150.0, "customer_id": "cus_abc"},
                "resolved_by": "user_bob",
                "resolved_at": "2026-01-01T00:01:00+00:00",
            },
        }
    ).encode()
    return body, {
        "x-agentwarden-timestamp": str(ts),
        "x-agentwarden-event-id": event_id,
        "x-agentwarden-signature": wh.sign_hex(ts, body, PLAIN_SECRET),
    }


class Recorder:
    def __init__(self) -> None:
        self.approved: list[WebhookEvent] = []
        self.denied: list[WebhookEvent] = []

    def on_approval(self, event: WebhookEvent) -> None:
        self.approved.append(event)

    def on_denial(self, event: WebhookEvent) -> None:
        self.denied.append(event)


@pytest.fixture
def recorder(configured: FakeWarden) -> Recorder:
    """Handlers for stripe.refund; the decision they hear about (act_9) is approved in Warden,
    so an approval can be claimed before on_approval runs."""
    configured.add_action("act_9", arguments=CANONICAL["arguments"])
    rec = Recorder()
    register_handler("stripe.refund", rec.on_approval, rec.on_denial)
    return rec


@pytest.mark.parametrize(
    ("delivery", "secret"),
    [
        (standard_delivery, STANDARD_SECRET),
        (arden_delivery, PLAIN_SECRET),
        (agentwarden_delivery, PLAIN_SECRET),
    ],
    ids=["standard", "arden", "agentwarden"],
)
def test_each_format_is_verified_parsed_and_dispatched_to_on_approval(
    recorder: Recorder, delivery: Any, secret: str
) -> None:
    body, headers = delivery()
    handle_webhook(body, headers, secret)
    (event,) = recorder.approved
    assert (event.event_type, event.warden_type) == ("action_approved", "approval.approved")
    assert (event.action_id, event.tool_name) == ("act_9", "stripe.refund")
    assert event.context == {"amount": 150.0, "customer_id": "cus_abc"}
    assert event.approved_by == "user_bob"


def test_header_names_are_matched_case_insensitively(recorder: Recorder) -> None:
    body, headers = standard_delivery()
    handle_webhook(body, {k.upper(): v for k, v in headers.items()}, STANDARD_SECRET)
    assert len(recorder.approved) == 1


def test_a_rejection_calls_on_denial_with_the_notes(recorder: Recorder) -> None:
    body, headers = standard_delivery(
        "approval.rejected", {**CANONICAL, "status": "denied", "notes": "no"}
    )
    handle_webhook(body, headers, STANDARD_SECRET)
    assert [(e.event_type, e.notes) for e in recorder.denied] == [("action_denied", "no")]


def test_an_expiry_calls_on_denial(recorder: Recorder) -> None:
    body, headers = standard_delivery("approval.expired", {**CANONICAL, "status": "expired"})
    event = handle_webhook(body, headers, STANDARD_SECRET)
    assert event is not None and event.warden_type == "approval.expired"
    assert len(recorder.denied) == 1 and recorder.approved == []


def test_a_pending_notice_dispatches_nothing_without_a_pending_handler(
    recorder: Recorder,
) -> None:
    body, headers = standard_delivery("log.pending_approval", {**CANONICAL, "status": "pending"})
    event = handle_webhook(body, headers, STANDARD_SECRET)
    assert event is not None and event.event_type == "action_pending"
    assert recorder.approved == [] and recorder.denied == []


def test_a_pending_notice_reaches_an_on_pending_handler() -> None:
    seen: list[str] = []
    register_handler("stripe.refund", on_pending=lambda e: seen.append(e.action_id))
    body, headers = standard_delivery("log.pending_approval", {**CANONICAL, "status": "pending"})
    handle_webhook(body, headers, STANDARD_SECRET)
    assert seen == ["act_9"]


@pytest.mark.parametrize("delivery", [standard_delivery, arden_delivery, agentwarden_delivery])
def test_a_bad_signature_is_refused(recorder: Recorder, delivery: Any) -> None:
    body, headers = delivery()
    with pytest.raises(ValueError, match="signature"):
        handle_webhook(
            body,
            headers,
            "whsec_" + base64.b64encode(b"x" * 32).decode()
            if delivery is standard_delivery
            else "wrong-key",
        )
    assert recorder.approved == []


def test_a_tampered_body_is_refused(recorder: Recorder) -> None:
    body, headers = arden_delivery()
    with pytest.raises(ValueError, match="signature"):
        handle_webhook(body.replace(b"150.0", b"15000.0"), headers, PLAIN_SECRET)


def test_a_stale_timestamp_is_refused(recorder: Recorder) -> None:
    body, headers = standard_delivery(ts=int(time.time()) - 301)
    with pytest.raises(ValueError, match="stale"):
        handle_webhook(body, headers, STANDARD_SECRET)
    assert recorder.approved == []


def test_a_replayed_event_id_is_refused(recorder: Recorder) -> None:
    body, headers = agentwarden_delivery()
    handle_webhook(body, headers, PLAIN_SECRET)
    with pytest.raises(ValueError, match="replay"):
        handle_webhook(body, headers, PLAIN_SECRET)
    assert len(recorder.approved) == 1


def test_a_denial_whose_callback_failed_runs_again_when_redelivered() -> None:
    calls: list[str] = []

    def flaky(event: WebhookEvent) -> None:
        calls.append(event.action_id)
        if len(calls) == 1:
            raise RuntimeError("database down")

    register_handler("stripe.refund", lambda e: None, flaky)
    body, headers = arden_delivery("action_denied")
    with pytest.raises(RuntimeError):
        handle_webhook(body, headers, PLAIN_SECRET)
    handle_webhook(body, headers, PLAIN_SECRET)
    assert calls == ["act_9", "act_9"]


def test_the_sqlite_seen_store_remembers_ids_across_instances(tmp_path: Path) -> None:
    path = str(tmp_path / "seen.db")
    body, headers = standard_delivery()
    handle_webhook(body, headers, STANDARD_SECRET, seen_store=wh.SqliteSeenStore(path))
    with pytest.raises(ValueError, match="replay"):
        handle_webhook(body, headers, STANDARD_SECRET, seen_store=wh.SqliteSeenStore(path))


def test_a_tool_handler_registered_after_a_restart_receives_the_decision(
    configured: FakeWarden,
) -> None:
    configured.set_policy("stripe.refund", "requires_approval")
    first_process: list[WebhookEvent] = []
    safe = wardenpy.guard_tool(
        "stripe.refund",
        lambda amount: amount,
        approval_mode="webhook",
        on_approval=first_process.append,
        on_denial=first_process.append,
    )
    pending = safe(150.0)
    configured.decide(pending.action_id, "approved")
    wh.registry.clear()  # the process restarted: nothing survives in memory ...
    restarted = Recorder()  # ... and the app registers its handlers again at import time
    register_handler("stripe.refund", restarted.on_approval, restarted.on_denial)
    body, headers = standard_delivery(data={**CANONICAL, "action_id": pending.action_id})
    handle_webhook(body, headers, STANDARD_SECRET)
    assert [e.action_id for e in restarted.approved] == [pending.action_id]
    assert first_process == []


def test_guard_tool_callbacks_receive_the_webhook_for_their_action(
    configured: FakeWarden,
) -> None:
    configured.set_policy("stripe.refund", "requires_approval")
    got: list[WebhookEvent] = []
    safe = wardenpy.guard_tool(
        "stripe.refund",
        lambda amount: amount,
        approval_mode="webhook",
        on_approval=got.append,
        on_denial=got.append,
    )
    pending = safe(150.0)
    configured.decide(pending.action_id, "approved")
    body, headers = arden_delivery()
    body = body.replace(b"act_9", pending.action_id.encode())
    ts = headers["X-Arden-Timestamp"]
    headers["X-Arden-Signature"] = wh.sign_hex(ts, body, PLAIN_SECRET)
    handle_webhook(body, headers, PLAIN_SECRET)
    assert [e.action_id for e in got] == [pending.action_id]


def test_one_decision_delivered_in_two_formats_is_dispatched_once(recorder: Recorder) -> None:
    handle_webhook(*standard_delivery(), STANDARD_SECRET)
    handle_webhook(*arden_delivery(), PLAIN_SECRET)
    assert len(recorder.approved) == 1


def test_signing_key_none_skips_verification_for_callers_that_verified(
    recorder: Recorder,
) -> None:
    body, headers = arden_delivery()
    assert verify_webhook_signature(
        body, headers["X-Arden-Timestamp"], headers["X-Arden-Signature"], PLAIN_SECRET
    )
    handle_webhook(body, {}, None)
    assert len(recorder.approved) == 1


def test_verify_accepts_the_standard_form_with_msg_id() -> None:
    body, headers = standard_delivery()
    assert verify_webhook_signature(
        body,
        headers["webhook-timestamp"],
        headers["webhook-signature"],
        STANDARD_SECRET,
        msg_id=headers["webhook-id"],
    )


def test_verify_accepts_any_of_several_rotated_standard_signatures() -> None:
    body, headers = standard_delivery()
    rotated = "v1," + base64.b64encode(b"0" * 32).decode() + " " + headers["webhook-signature"]
    assert verify_webhook_signature(
        body, headers["webhook-timestamp"], rotated, STANDARD_SECRET, msg_id=headers["webhook-id"]
    )


@pytest.mark.parametrize("signature", ["", "sha256=00", "v1,abc", "garbage"])
def test_verify_returns_false_for_bad_signatures(signature: str) -> None:
    assert verify_webhook_signature(b"{}", "123", signature, PLAIN_SECRET) is False


def test_standard_deliveries_signed_by_the_standardwebhooks_library_are_accepted(
    recorder: Recorder,
) -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    body = json.dumps(
        {
            "id": "evt_lib",
            "type": "approval.approved",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": CANONICAL,
        }
    )
    now = dt.datetime.now(dt.timezone.utc)
    signature = standardwebhooks.Webhook(STANDARD_SECRET).sign("evt_lib", now, body)
    headers = {
        "webhook-id": "evt_lib",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    handle_webhook(body.encode(), headers, STANDARD_SECRET)
    assert len(recorder.approved) == 1


def test_our_standard_signature_is_accepted_by_the_standardwebhooks_library() -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    body, headers = standard_delivery()
    payload = standardwebhooks.Webhook(STANDARD_SECRET).verify(body, headers)
    assert payload["data"]["action_id"] == "act_9"


def test_our_arden_signature_is_accepted_by_ardenpy() -> None:
    ardenpy = pytest.importorskip("ardenpy")
    body, headers = arden_delivery()
    assert ardenpy.verify_webhook_signature(
        body, headers["X-Arden-Timestamp"], headers["X-Arden-Signature"], PLAIN_SECRET
    )


def test_the_signing_secret_never_needs_configure() -> None:
    assert not wardenpy.is_configured()
    body, headers = arden_delivery()
    assert verify_webhook_signature(
        body, headers["X-Arden-Timestamp"], headers["X-Arden-Signature"], PLAIN_SECRET
    )


# --- webhook mode claims the action before on_approval, as the other modes do ------------------


def guarded_in_webhook_mode(fake: FakeWarden, on_approval: Any, on_denial: Any = None) -> Any:
    fake.set_policy("stripe.refund", "requires_approval")
    return wardenpy.guard_tool(
        "stripe.refund",
        lambda amount, customer_id: amount,
        approval_mode="webhook",
        on_approval=on_approval,
        on_denial=on_denial or (lambda e: None),
    )


def approval_of(action_id: str, event_id: str = "evt_std1") -> tuple[bytes, dict[str, str]]:
    return standard_delivery(data={**CANONICAL, "action_id": action_id}, event_id=event_id)


def test_webhook_mode_claims_the_action_before_on_approval_and_reports_success(
    configured: FakeWarden,
) -> None:
    claimed_when_called: list[Any] = []

    def on_approval(event: WebhookEvent) -> None:
        claimed_when_called.append(configured.actions[event.action_id]["claimed_at"])

    pending = guarded_in_webhook_mode(configured, on_approval)(150.0, "cus_abc")
    configured.decide(pending.action_id, "approved")
    handle_webhook(*approval_of(pending.action_id), STANDARD_SECRET)
    assert len(claimed_when_called) == 1 and claimed_when_called[0] is not None
    assert configured.wait_for_outcome(pending.action_id)["status"] == "success"


def test_an_approval_delivered_again_after_a_restart_runs_on_approval_once(
    configured: FakeWarden,
) -> None:
    runs: list[str] = []
    pending = guarded_in_webhook_mode(configured, lambda e: runs.append(e.action_id))(
        150.0, "cus_abc"
    )
    configured.decide(pending.action_id, "approved")
    body, headers = approval_of(pending.action_id)
    handle_webhook(body, headers, STANDARD_SECRET)
    # A restart: the seen ids were in memory and the handlers are registered afresh.
    wh.registry.clear()
    wh.set_seen_store(wh.InMemorySeenStore())
    register_handler("stripe.refund", lambda e: runs.append(e.action_id), lambda e: None)
    event = handle_webhook(body, headers, STANDARD_SECRET)
    assert event.action_id == pending.action_id
    assert runs == [pending.action_id]
    assert len(configured.calls("POST", f"/api/v1/actions/{pending.action_id}/claim")) == 2


def test_an_approval_claimed_by_another_process_first_does_not_run_on_approval(
    configured: FakeWarden,
) -> None:
    runs: list[str] = []
    pending = guarded_in_webhook_mode(configured, lambda e: runs.append(e.action_id))(
        150.0, "cus_abc"
    )
    configured.decide(pending.action_id, "approved")
    with wardenpy.Client(api_key=AGENT_KEY, api_url=configured.url) as other_process:
        other_process.claim(pending.action_id)
    handle_webhook(*approval_of(pending.action_id), STANDARD_SECRET)
    assert runs == []


def test_an_approval_whose_callback_failed_is_reported_failed_and_not_run_again(
    configured: FakeWarden,
) -> None:
    runs: list[str] = []

    def fails(event: WebhookEvent) -> None:
        runs.append(event.action_id)
        raise RuntimeError("card network down")

    pending = guarded_in_webhook_mode(configured, fails)(150.0, "cus_abc")
    configured.decide(pending.action_id, "approved")
    body, headers = approval_of(pending.action_id)
    with pytest.raises(RuntimeError):
        handle_webhook(body, headers, STANDARD_SECRET)
    outcome = configured.wait_for_outcome(pending.action_id)
    assert outcome["status"] == "failed"
    assert "card network down" in outcome["error"]
    handle_webhook(body, headers, STANDARD_SECRET)  # Warden's retry: claimed, so not run
    assert runs == [pending.action_id]


def test_a_coroutine_on_approval_in_a_running_loop_reports_its_outcome_when_done(
    configured: FakeWarden,
) -> None:
    configured.add_action("act_9", arguments=CANONICAL["arguments"])
    ran = asyncio.Event()

    async def on_approval(event: WebhookEvent) -> None:
        await asyncio.sleep(0)
        ran.set()

    register_handler("stripe.refund", on_approval, lambda e: None)

    async def receiver() -> None:  # e.g. a FastAPI route
        handle_webhook(*standard_delivery(), STANDARD_SECRET)
        await asyncio.wait_for(ran.wait(), 5)

    asyncio.run(receiver())
    assert configured.wait_for_outcome("act_9")["status"] == "success"


def test_without_a_client_an_approval_is_not_run_and_can_be_redelivered(fake: FakeWarden) -> None:
    fake.add_action("act_9", arguments=CANONICAL["arguments"])
    runs: list[str] = []
    register_handler("stripe.refund", lambda e: runs.append(e.action_id), lambda e: None)
    body, headers = standard_delivery()
    with pytest.raises(wardenpy.ConfigurationError, match="claim"):
        handle_webhook(body, headers, STANDARD_SECRET)
    assert runs == []
    wardenpy.configure(api_key=AGENT_KEY, api_url=fake.url)
    handle_webhook(body, headers, STANDARD_SECRET)  # the redelivery, once configured
    assert runs == ["act_9"]


def test_the_client_given_to_handle_webhook_claims_and_reports(fake: FakeWarden) -> None:
    fake.add_action("act_9", arguments=CANONICAL["arguments"])
    runs: list[str] = []
    register_handler("stripe.refund", lambda e: runs.append(e.action_id), lambda e: None)
    with wardenpy.Client(api_key=AGENT_KEY, api_url=fake.url) as client:
        handle_webhook(*standard_delivery(), STANDARD_SECRET, client=client)
        assert runs == ["act_9"]
        assert fake.wait_for_outcome("act_9")["status"] == "success"


def test_guard_tool_with_its_own_client_claims_with_it_when_the_webhook_arrives(
    fake: FakeWarden,
) -> None:
    fake.set_policy("stripe.refund", "requires_approval")
    runs: list[str] = []
    with wardenpy.Client(api_key=AGENT_KEY, api_url=fake.url) as client:
        safe = wardenpy.guard_tool(
            "stripe.refund",
            lambda amount: amount,
            approval_mode="webhook",
            on_approval=lambda e: runs.append(e.action_id),
            on_denial=lambda e: None,
            client=client,
        )
        pending = safe(150.0)
        fake.decide(pending.action_id, "approved")
        assert not wardenpy.is_configured()
        handle_webhook(*approval_of(pending.action_id), STANDARD_SECRET)
        assert runs == [pending.action_id]
        assert fake.wait_for_outcome(pending.action_id)["status"] == "success"
