"""Ready-to-run examples shown with a new API key: a ``curl`` request and SDK snippets.

Pure (no ORM, no I/O): the key page passes the key's kind, the secret it shows once, the
server's base URL and the agent's name; each example works as pasted.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    slug: str  # the element id on the page (copy buttons point at it)
    title: str
    text: str


def _curl(method: str, url: str, key: str, body: dict | None = None) -> str:
    lines = [f"curl -s -X {method} {shlex.quote(url)}", f"  -H {shlex.quote('X-API-Key: ' + key)}"]
    if body is not None:
        lines.append("  -H 'Content-Type: application/json'")
        lines.append(f"  -d {shlex.quote(json.dumps(body))}")
    return " \\\n".join(lines)


def _agent_examples(key: str, base: str) -> list[Example]:
    return [
        Example(
            "example-curl",
            "curl",
            _curl(
                "POST",
                f"{base}/api/v1/check",
                key,
                {"action": "stripe.refund", "arguments": {"amount": 150}},
            ),
        ),
        Example(
            "example-wardenpy",
            "Python: wardenpy (this project's SDK, pip install ./sdk)",
            "import wardenpy\n\n"
            f'wardenpy.configure(api_key="{key}", api_url="{base}")\n\n\n'
            "def issue_refund(amount: float, customer_id: str) -> dict:\n"
            '    return {"refund_id": "re_123", "amount": amount}\n\n\n'
            'safe_refund = wardenpy.guard_tool("stripe.refund", issue_refund)\n'
            'safe_refund(150.0, customer_id="cus_abc")  # waits while a reviewer decides\n',
        ),
        Example(
            "example-ardenpy",
            "Python: ardenpy (Arden's SDK, unchanged)",
            "import ardenpy\n\n"
            f'ardenpy.configure(api_key="{key}", api_url="{base}")\n\n\n'
            "def issue_refund(amount: float, customer_id: str) -> dict:\n"
            '    return {"refund_id": "re_123", "amount": amount}\n\n\n'
            'safe_refund = ardenpy.guard_tool("stripe.refund", issue_refund)\n'
            'safe_refund(150.0, customer_id="cus_abc")\n',
        ),
    ]


def _org_examples(key: str, base: str, agent_name: str) -> list[Example]:
    return [
        Example(
            "example-curl",
            "curl",
            _curl(
                "POST",
                f"{base}/api/v1/check",
                key,
                {"agent": agent_name, "action": "stripe.refund", "arguments": {"amount": 150}},
            ),
        ),
        Example(
            "example-wardenpy",
            "Python: wardenpy (this project's SDK, pip install ./sdk)",
            "import wardenpy\n\n"
            f'client = wardenpy.Client(api_key="{key}", api_url="{base}")\n'
            f'result = client.check("{agent_name}", "stripe.refund", {{"amount": 150}})\n'
            "print(result.decision, result.reason)\n",
        ),
        Example(
            "example-agentwarden",
            "Python: agentwarden (AgentWarden's SDK, unchanged)",
            "from agentwarden import AgentWarden\n\n"
            f'warden = AgentWarden(api_key="{key}", base_url="{base}")\n'
            f'result = warden.check("{agent_name}", "stripe.refund", {{"amount": 150}})\n'
            "print(result.allowed, result.requires_approval, result.reason)\n",
        ),
    ]


def _approver_examples(key: str, base: str) -> list[Example]:
    return [
        Example(
            "example-curl",
            "curl: the pending requests",
            _curl("GET", f"{base}/api/v1/approvals?status=pending", key),
        ),
        Example(
            "example-curl-approve",
            "curl: approve one (put its act_ id in)",
            _curl("POST", f"{base}/api/v1/actions/ACTION_ID/approve", key, {"notes": "Checked."}),
        ),
        Example(
            "example-wardenpy",
            "Python: wardenpy (this project's SDK, pip install ./sdk)",
            "import wardenpy\n\n"
            f'client = wardenpy.Client(api_key="{key}", api_url="{base}")\n'
            "for request in client.list_approvals():\n"
            "    print(request.action_id, request.status)\n"
            '# client.approve("act_...", notes="Checked.")\n',
        ),
    ]


def key_examples(*, kind: str, key: str, base_url: str, agent_name: str = "") -> list[Example]:
    """The examples for a new key of ``kind`` (agent, org or approver)."""
    base = base_url.rstrip("/")
    if kind == "agent":
        return _agent_examples(key, base)
    if kind == "org":
        return _org_examples(key, base, agent_name or "my-agent")
    if kind == "approver":
        return _approver_examples(key, base)
    return []
