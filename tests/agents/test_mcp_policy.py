"""Which tools the gateway's tools/list hides: those the agent's policy blocks outright."""

from __future__ import annotations

from typing import Any

import pytest

from agents.mcp.decisions import blocks_outright
from agents.policy import compile_policy
from agents.policy_document import rule_spec_from_mapping


def policy(*rules: dict[str, Any], default: str = "allow") -> Any:
    specs = [
        rule_spec_from_mapping({"name": f"r{n}", **r}, id=f"r{n}") for n, r in enumerate(rules)
    ]
    return compile_policy(specs, default=default)


@pytest.mark.parametrize(
    ("rules", "default", "hidden"),
    [
        ([{"action": "mcp.files.delete_all", "effect": "block"}], "allow", True),
        ([{"action": "mcp.files.*", "effect": "block"}], "allow", True),
        ([{"action": "mcp.files.delete_all", "effect": "requires_approval"}], "allow", False),
        (
            [
                {
                    "action": "mcp.files.delete_all",
                    "effect": "block",
                    "when": {"field": "path", "op": "eq", "value": "/"},
                }
            ],
            "allow",
            False,
        ),
        (
            [{"action": "mcp.files.delete_all", "effect": "block", "environments": ["live"]}],
            "allow",
            False,
        ),
        ([], "block", True),
        ([{"action": "mcp.files.delete_all", "effect": "allow"}], "block", False),
        ([{"action": "mcp.other.*", "effect": "allow"}], "block", True),
        ([{"action": "mcp.files.delete_all", "effect": "block", "enabled": False}], "allow", False),
    ],
)
def test_a_tool_is_hidden_only_when_every_call_of_it_is_blocked(rules, default, hidden):
    assert (
        blocks_outright(policy(*rules, default=default), "mcp.files.delete_all", "test") is hidden
    )
