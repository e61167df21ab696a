"""The Slack message of a held call, as Block Kit: pure functions, no ORM, no I/O.

The arguments are shown with the rule's ``redact`` paths replaced by ``[redacted]`` (a path
is dotted, ``*`` stands for every key or item of one level: ``items.*.card_number``), long
strings cut, and the whole block bounded by Slack's 3,000-character limit of a text object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

REDACTED = "[redacted]"
MAX_STRING = 200  # characters of one argument value shown
MAX_ARGUMENTS_TEXT = 2500  # characters of the arguments block (Slack allows 3,000)
MAX_NOTES_SHOWN = 500

APPROVE_ACTION = "warden_approve"
REJECT_ACTION = "warden_reject"
REJECT_CALLBACK = "warden_reject_modal"
REMEMBER_ACTION = "warden_approve_remember"
REMEMBER_CALLBACK = "warden_remember_modal"
NOTES_BLOCK = "notes"
NOTES_INPUT = "notes_input"
# The "Approve and remember" modal: one input block per field of the API's ``grant``; an
# error the decision service names (``grant.ttl`` ...) is shown under that block.
GRANT_BLOCKS = ("kind", "ttl", "max_amount", "uses")
GRANT_INPUT = "value"
KIND_WORDS = {
    "identical": "Identical calls (same arguments)",
    "session": "This action for the rest of the session",
    "amount": "This action up to an amount",
}


@dataclass(frozen=True)
class MessageView:
    """What the message shows about one request (built from the ApprovalRequest)."""

    action_id: str
    action: str
    agent_name: str
    environment: str
    arguments: Any
    rule_name: str
    reason: str
    expires_at: datetime
    status: str
    decided_by: str = ""
    decided_at: datetime | None = None
    notes: str = ""
    detail_url: str = ""
    approvers: str = ""  # who may decide, as the dashboard says it ("" : not limited)
    escalated: bool = False
    grant_kinds: tuple[str, ...] = ()  # what an approver may remember (the rule's grants)


def redact(arguments: Any, paths: list[str] | tuple[str, ...]) -> Any:
    """``arguments`` with the value at each dotted path replaced by ``[redacted]``."""
    result = _copy(arguments)
    for path in paths:
        result = _redact_path(result, path.split("."))
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _redact_path(value: Any, parts: list[str]) -> Any:
    if not parts:
        return REDACTED
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        for key in keys:
            value[key] = _redact_path(value[key], rest)
    elif isinstance(value, list):
        if head == "*":
            indexes = range(len(value))
        elif head.isdigit() and int(head) < len(value):
            indexes = range(int(head), int(head) + 1)
        else:
            indexes = range(0)
        for index in indexes:
            value[index] = _redact_path(value[index], rest)
    return value


def truncate(value: Any, limit: int = MAX_STRING) -> Any:
    """Every string longer than ``limit`` cut, saying how much was left out."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}… ({len(value) - limit} more characters)"
    if isinstance(value, dict):
        return {truncate(key, 80): truncate(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [truncate(item, limit) for item in value]
    return value


def arguments_text(arguments: Any, redact_paths: list[str] | tuple[str, ...]) -> str:
    shown = truncate(redact(arguments, redact_paths))
    text = json.dumps(shown, indent=1, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > MAX_ARGUMENTS_TEXT:
        text = text[:MAX_ARGUMENTS_TEXT] + "\n… (arguments cut; open the request in Warden)"
    return text.replace("```", "'''")


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(moment: datetime) -> str:
    """A date Slack shows in the reader's time zone, with a UTC fallback."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


OUTCOME = {
    "approved": ":white_check_mark: *Approved*",
    "denied": ":x: *Rejected*",
    "expired": ":hourglass: *Expired* without a decision",
    "cancelled": ":no_entry_sign: *Cancelled* by the agent",
}


def message_text(view: MessageView) -> str:
    """The notification text (also what clients without blocks show)."""
    if view.status == "pending":
        return f"Approval needed: {view.agent_name} wants to run {view.action}"
    return f"{view.action} by {view.agent_name}: {view.status}"


def message_blocks(view: MessageView, redact_paths: list[str] | tuple[str, ...]) -> list[dict]:
    fields = [
        f"*Agent*\n{_escape(view.agent_name)} ({view.environment})",
        f"*Rule*\n{_escape(view.rule_name or '(none)')}",
        f"*Reason*\n{_escape(view.reason or 'a rule requires it')[:500]}",
        f"*Deadline*\n{_when(view.expires_at)}",
    ]
    if view.approvers:
        escalated = " (escalated)" if view.escalated else ""
        fields.append(f"*Approvers{escalated}*\n{_escape(view.approvers)[:500]}")
    blocks: list[dict] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Approval needed: {view.action}"[:150]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Arguments*\n```"
                + _escape(arguments_text(view.arguments, redact_paths))
                + "```",
            },
        },
    ]
    if view.status == "pending":
        blocks.append(
            {
                "type": "actions",
                "block_id": "decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": view.action_id,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT_ACTION,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": view.action_id,
                    },
                    *(
                        [
                            {
                                "type": "button",
                                "action_id": REMEMBER_ACTION,
                                "text": {"type": "plain_text", "text": "Approve and remember…"},
                                "value": view.action_id,
                            }
                        ]
                        if view.grant_kinds
                        else []
                    ),
                ],
            }
        )
    else:
        outcome = OUTCOME.get(view.status, f"*{view.status}*")
        line = outcome
        if view.decided_by and view.status in {"approved", "denied", "cancelled"}:
            line += f" by {_escape(view.decided_by)}"
        if view.decided_at is not None:
            line += f" at {_when(view.decided_at)}"
        if view.notes:
            line += f"\n>{_escape(view.notes[:MAX_NOTES_SHOWN])}"
        blocks.append(
            {"type": "section", "block_id": "outcome", "text": {"type": "mrkdwn", "text": line}}
        )
    if view.detail_url:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"<{view.detail_url}|Open in Warden> · {view.action_id}",
                    }
                ],
            }
        )
    return blocks


def reject_modal(*, action_id: str, action: str) -> dict:
    """The modal a Reject click opens: the note, then Reject."""
    return {
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "private_metadata": action_id,
        "title": {"type": "plain_text", "text": "Reject this call"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"Reject *{_escape(action)}* ({action_id})?"},
            },
            {
                "type": "input",
                "block_id": NOTES_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Note for the agent's owner"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": NOTES_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }


def _input(block_id: str, label: str, element: dict, *, optional: bool, hint: str = "") -> dict:
    block = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": {"action_id": GRANT_INPUT, **element},
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def remember_modal(*, action_id: str, action: str, kinds: tuple[str, ...]) -> dict:
    """The modal "Approve and remember…" opens: approve, and allow calls like this one
    without asking again, within the kinds the rule allows (as the dashboard offers)."""
    options = [
        {"text": {"type": "plain_text", "text": KIND_WORDS.get(kind, kind)}, "value": kind}
        for kind in kinds
    ]
    text_input = {"type": "plain_text_input"}
    return {
        "type": "modal",
        "callback_id": REMEMBER_CALLBACK,
        "private_metadata": action_id,
        "title": {"type": "plain_text", "text": "Approve and remember"},
        "submit": {"type": "plain_text", "text": "Approve"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Approve *{_escape(action)}* ({action_id}) and allow calls like "
                    "it without asking again. Same agent and environment only; a rule that "
                    "blocks still blocks.",
                },
            },
            _input(
                "kind",
                "Allow without asking",
                {"type": "static_select", "options": options, "initial_option": options[0]},
                optional=False,
            ),
            _input(
                "ttl",
                "For",
                {**text_input, "initial_value": "1h", "max_length": 12},
                optional=False,
                hint="30m, 8h, 1d… at most 30d",
            ),
            _input(
                "max_amount",
                "Up to amount (amount only)",
                {**text_input, "max_length": 40},
                optional=True,
            ),
            _input("uses", "Uses (amount only)", {**text_input, "max_length": 6}, optional=True),
            _input(
                NOTES_BLOCK,
                "Note",
                {"type": "plain_text_input", "multiline": True, "max_length": 2000},
                optional=True,
            ),
        ],
    }


def remember_values(state: dict) -> tuple[dict[str, Any], str]:
    """The grant (as the API's ``grant``) and the note of a submitted remember modal."""
    values = state.get("values") or {}

    def read(block_id: str) -> str:
        element = (values.get(block_id) or {}).get(GRANT_INPUT) or {}
        if not isinstance(element, dict):
            return ""
        chosen = element.get("selected_option")
        value = chosen.get("value") if isinstance(chosen, dict) else element.get("value")
        return value.strip() if isinstance(value, str) else ""

    grant: dict[str, Any] = {"kind": read("kind"), "ttl": read("ttl")}
    if grant["kind"] == "amount":
        grant["max_amount"] = read("max_amount")
        uses = read("uses")
        grant["uses"] = int(uses) if uses.isdigit() else uses
    return grant, read(NOTES_BLOCK)
