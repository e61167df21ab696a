"""The fail-closed property, for random policies and calls: no change an agent can make to an
argument's type, name case or sign, nor to the action name's case, turns a held or blocked
call into an allowed one.

The changes: a number written as a numeric string, a float or in exponent form; any value
wrapped in an object or a list, replaced by a non-numeric string, null, a boolean, NaN or
infinity, or removed; an argument name in other case; the action name in other case; and an
amount made negative. (A negative number is a different number for a comparison such as
``gt``, so the sign changes only ``amount``, the field the generated rules use for
``max_amount``, sums and nothing else; the other changes apply to every argument. And
``exists`` is left out: it is the one operator that reads an absent argument as a definite
answer, so removing or renaming an argument legitimately changes it.)
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.policy import BLOCK, Call, compile_policy
from agents.policy_document import parse_policy_document

FIELDS = ["risk", "currency", "tier", "items.*.price", "customer.id", "$session"]
NUMERIC_OPS = ["gt", "gte", "lt", "lte"]


@st.composite
def leaf(draw: Any) -> dict[str, Any]:
    field = draw(st.sampled_from(FIELDS))
    if field in ("risk", "items.*.price"):
        op = draw(st.sampled_from([*NUMERIC_OPS, "eq", "ne", "in", "not_in"]))
    else:
        op = draw(
            st.sampled_from(
                ["eq", "ne", "in", "not_in", "startswith", "endswith", "ieq", "icontains"]
            )
        )
    if field in ("risk", "items.*.price"):
        number = st.integers(-5, 20)
        value: Any = draw(
            st.lists(number, min_size=1, max_size=3) if op in ("in", "not_in") else number
        )
    else:
        text = st.sampled_from(["usd", "USD", "eur", "vip", "basic", "cus_1", "s-1", ""])
        value = draw(st.lists(text, min_size=1, max_size=3) if op in ("in", "not_in") else text)
    return {"field": field, "op": op, "value": value}


def expressions(depth: int = 2) -> st.SearchStrategy[Any]:
    if depth == 0:
        return leaf()
    inner = expressions(depth - 1)
    return st.one_of(
        leaf(),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    )


WHEN = st.lists(expressions(), min_size=1, max_size=3)
UNLESS = st.lists(expressions(1), min_size=1, max_size=2)


@st.composite
def rules(draw: Any, index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": f"rule {index}",
        "action": draw(st.sampled_from(["stripe.refund", "stripe.*", "*", "Stripe.Refund"])),
        "effect": draw(st.sampled_from(["allow", "requires_approval", "block"])),
    }
    if draw(st.booleans()):
        rule["when"] = draw(WHEN)
    if draw(st.integers(0, 3)) == 0:
        rule["unless"] = draw(UNLESS)
    if draw(st.booleans()):
        rule["max_amount"] = draw(st.integers(1, 200))
    limit = draw(st.integers(0, 3))
    if limit == 1:
        rule["limit"] = {"sum": "amount", "over": draw(st.integers(1, 500)), "per": "1d"}
    elif limit == 2:
        rule["limit"] = {"count": draw(st.integers(1, 5)), "per": "1h"}
    if "limit" in rule and draw(st.booleans()):
        rule["limit"]["by"] = draw(st.sampled_from(["customer.id", "$session"]))
    return rule


@st.composite
def documents(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    return {
        "agent": "bot",
        "default": draw(st.sampled_from(["allow", "block"])),
        "rules": [draw(rules(i)) for i in range(count)],
    }


@st.composite
def calls(draw: Any) -> tuple[dict[str, Any], str]:
    arguments = {
        "amount": draw(st.one_of(st.integers(0, 300), st.sampled_from([0.5, 99.99, 150.0]))),
        "risk": draw(st.integers(-5, 20)),
        "currency": draw(st.sampled_from(["usd", "USD", "eur"])),
        "tier": draw(st.sampled_from(["vip", "basic"])),
        "items": [{"price": p} for p in draw(st.lists(st.integers(0, 20), max_size=3))],
        "customer": {"id": draw(st.sampled_from(["cus_1", "cus_2"]))},
    }
    session = draw(st.sampled_from(["s-1", "s-2", ""]))
    return arguments, session


# --- Changes an agent can make -----------------------------------------------------------------

REPLACEMENTS = [
    lambda v: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v,
    lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool) else v,
    lambda v: f"{v:e}" if isinstance(v, (int, float)) and not isinstance(v, bool) else v,
    lambda v: {"value": v},
    lambda v: [v],
    lambda v: "abc" if isinstance(v, (int, float)) else v,  # a number in a non-number
    lambda v: None,
    lambda v: True,
    lambda v: math.nan,
    lambda v: math.inf,
    lambda v: -math.inf,
    lambda v: 7 if isinstance(v, str) else v,
]
PATHS = [
    ("amount",),
    ("risk",),
    ("currency",),
    ("tier",),
    ("customer", "id"),
    ("items", 0, "price"),
]


def _replaced(
    arguments: dict[str, Any], path: tuple[Any, ...], change: Any
) -> dict[str, Any] | None:
    copy = _deep_copy(arguments)
    holder: Any = copy
    for part in path[:-1]:
        try:
            holder = holder[part]
        except (KeyError, IndexError, TypeError):
            return None
    last = path[-1]
    try:
        holder[last] = change(holder[last])
    except (KeyError, IndexError, TypeError):
        return None
    return copy


def _removed(arguments: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any] | None:
    copy = _deep_copy(arguments)
    holder: Any = copy
    for part in path[:-1]:
        try:
            holder = holder[part]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(holder, dict) and path[-1] in holder:
        del holder[path[-1]]
        return copy
    return None


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def changes(arguments: dict[str, Any], session: str) -> list[tuple[str, dict[str, Any], str, str]]:
    """(what changed, arguments, session, action case) for every change of one call."""
    out = []
    for path in PATHS:
        for index, change in enumerate(REPLACEMENTS):
            changed = _replaced(arguments, path, change)
            if changed is not None:
                out.append((f"{path} replacement {index}", changed, session, "lower"))
        removed = _removed(arguments, path)
        if removed is not None:
            out.append((f"{path} removed", removed, session, "lower"))
        top = path[0]
        renamed = {(k.upper() if k == top else k): v for k, v in arguments.items()}
        out.append((f"{top} renamed", renamed, session, "lower"))
    amount = arguments["amount"]
    for negative in (-abs(amount) - 1, -abs(amount), f"-{abs(amount)}"):
        out.append(("amount negative", {**arguments, "amount": negative}, session, "lower"))
    out.append(("no session", arguments, "", "lower"))
    for case in ("upper", "title"):
        out.append((f"action {case}", arguments, session, case))
    return out


def decide(policy: Any, arguments: dict[str, Any], session: str, case: str, totals: Any) -> str:
    action = {"lower": "stripe.refund", "upper": "STRIPE.REFUND", "title": "Stripe.Refund"}[case]
    return policy.evaluate(Call(action, arguments, "live", session_id=session), totals).decision


@settings(max_examples=200, deadline=None)
@given(document=documents(), call=calls(), total=st.integers(0, 600))
def test_no_change_to_an_argument_turns_a_held_or_blocked_call_into_an_allowed_one(
    document: dict[str, Any], call: tuple[dict[str, Any], str], total: int
) -> None:
    parsed = parse_policy_document(document)
    from dataclasses import replace

    specs = [replace(spec, id=f"r{i}", position=i) for i, spec in enumerate(parsed.rules)]
    policy = compile_policy(specs, default=parsed.default)
    totals = {
        spec.id: Decimal(total) if spec.limit and spec.limit.kind == "sum" else total % 7
        for spec in specs
    }
    arguments, session = call
    before = decide(policy, arguments, session, "lower", totals)
    if before == "allow":
        return
    for what, changed, changed_session, case in changes(arguments, session):
        after = decide(policy, changed, changed_session, case, totals)
        assert after != "allow", (what, before, document, arguments, changed)
    assert before in ("requires_approval", BLOCK)
