"""Why a call was decided as it was: the evaluator's trace, and the same in plain words.

``decision_trace`` re-derives, for one call, what ``CompiledPolicy.evaluate`` looked at: the
rules whose action pattern matched the call (usually one or two), each of their conditions
with the value it read and whether it held, failed or was undecidable (and why), the
``max_amount`` comparison, and the running total consulted (total before the call, what the
call adds, the limit). Every check keeps it in its audit row (``data["trace"]``); the same
totals the decision used are shown, nothing is read again.

It costs the check path little because the decision itself does not change: the evaluator
runs as before, and the trace only walks the few rules whose pattern matched, with parts
prepared once per compiled rule (``_Rule.trace_plan``). It is bounded (``TRACE_MAX_*``): at
most ``TRACE_MAX_RULES`` rules (plus the deciding rule if it comes later), at most
``TRACE_MAX_CONDITIONS`` conditions in all (the rest counted, not listed), and every value
and field name cut to ``TRACE_MAX_TEXT`` characters (ending with ``…``). Undecidable
conditions and unusable amounts carry a short code (``missing``, ``type`` ...) that
``trace_explain`` turns into words.

``trace_explain`` renders a stored trace as lines of plain words. It never raises: a trace
it cannot read is explained as such. Pure: no Django, no ORM, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring  # C: one string as JSON, non-ASCII kept
from typing import Any

from agents.policy import (
    _AMBIGUOUS,
    _MISSING,
    _OP_NEEDS,
    ALLOW,
    BLOCK,
    REQUIRES_APPROVAL,
    AllOf,
    Call,
    CompiledPolicy,
    Cond,
    Decision,
    Expr,
    Not,
    PlanFeatures,
    _all3,
    _any3,
    _Many,
    _not3,
    _Rule,
    budget_key_value,
    compile_expr,
    condition_judge,
    field_getter,
    format_number,
    to_decimal,
)

TRACE_VERSION = 1
TRACE_MAX_RULES = 8
TRACE_MAX_CONDITIONS = 24
TRACE_MAX_TEXT = 64

HELD, FAILED, UNDECIDABLE = "held", "failed", "undecidable"
_PLAIN_INT = 10**18
_RESULT = {True: HELD, False: FAILED, None: UNDECIDABLE}
_ELLIPSIS = "…"

NO_EXPLANATION = (
    "No explanation recorded: this check was recorded before Warden kept the evaluation "
    "trace of each decision."
)
UNREADABLE = "No explanation: this check's trace is in a format this version cannot read."


# ---------------------------------------------------------------------------
# Values, bounded
# ---------------------------------------------------------------------------


def _cut(text: str, room: int = TRACE_MAX_TEXT) -> str:
    return text if len(text) <= room else text[: room - 1] + _ELLIPSIS


def number_text(number: Decimal) -> str:
    """A number as ``format_number`` writes it, cut to the bound."""
    return _cut(format_number(number))


def show(value: Any, room: int = TRACE_MAX_TEXT) -> str:
    """``value`` as JSON text, at most ``room`` characters; the work is bounded by ``room``
    too, however large the value."""
    kind = type(value)
    if kind is str:
        return _cut(encode_basestring(value if len(value) <= room else value[:room]), room)
    if kind is int:
        if -(10**60) < value < 10**60:
            return _cut(str(value), room)
        # str() of a huge int is slow, and refused past 4,300 digits.
        return _cut(f"<an integer of {int(abs(value).bit_length() * 0.30103) + 1} digits>", room)
    out: list[str] = []
    _emit(value, out, room + 1)
    return _cut("".join(out), room)


def _emit(value: Any, out: list[str], room: int) -> int:
    """Append the JSON text of ``value`` to ``out``, stopping once ``room`` characters are
    written; returns the characters written."""
    if room <= 0:
        return 0
    if value is None:
        text = "null"
    elif value is True:
        text = "true"
    elif value is False:
        text = "false"
    elif value is _MISSING:
        text = "<missing>"
    elif isinstance(value, str):
        text = encode_basestring(value[:room])
    elif isinstance(value, int):
        text = show(value, room)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, Decimal):
        text = number_text(value)
    elif isinstance(value, (Mapping, list, tuple)):
        mapping = isinstance(value, Mapping)
        out.append("{" if mapping else "[")
        used = 1
        for index, item in enumerate(value.items() if mapping else value):
            if used >= room:
                break
            if index:
                out.append(", ")
                used += 2
            if mapping:
                key, item = item
                used += _emit(str(key), out, room - used)
                out.append(": ")
                used += 2
            used += _emit(item, out, room - used)
        out.append("}" if mapping else "]")
        return used + 1
    else:
        text = f"<{type(value).__name__}>"
    text = text[:room]
    out.append(text)
    return len(text)


# ---------------------------------------------------------------------------
# What is prepared once per compiled rule
# ---------------------------------------------------------------------------


class _CondPlan:
    __slots__ = ("base", "cond", "get", "judge")
    count = 1

    def __init__(self, cond: Cond) -> None:
        self.cond = cond
        self.get = field_getter(cond.field)
        self.judge = condition_judge(cond)
        value = f"$lists.{cond.list_name}" if cond.list_name else show(cond.value)
        self.base = {"field": _cut(cond.field), "op": cond.op, "value": _cut(value)}

    def test(self, call: Call) -> bool | None:
        return self.judge(self.get(call))


class _GroupPlan:
    __slots__ = ("count", "items", "kind", "test")

    def __init__(self, kind: str, items: tuple[Any, ...], test: Any) -> None:
        self.kind = kind
        self.items = items
        self.test = test
        self.count = sum(item.count for item in items)


class _NotPlan:
    __slots__ = ("count", "item", "test")

    def __init__(self, item: Any, test: Any) -> None:
        self.item = item
        self.test = test
        self.count = item.count


class _RulePlan:
    __slots__ = ("head", "unless", "when")

    def __init__(self, rule: _Rule) -> None:
        spec = rule.spec
        self.head = {
            "rule": spec.name,
            "id": spec.id,
            "action": _cut(spec.action),
            "effect": spec.effect,
        }
        self.when = _plan_expr(spec.when) if spec.when is not None else None
        self.unless = tuple(_plan_expr(expr) for expr in spec.unless)


def _plan_expr(expr: Expr) -> Any:
    if isinstance(expr, Cond):
        return _CondPlan(expr)
    if isinstance(expr, Not):
        return _NotPlan(_plan_expr(expr.item), compile_expr(expr))
    if len(expr.items) == 1:  # `when: [one condition]` is that condition (as compile_expr)
        return _plan_expr(expr.items[0])
    kind = "all" if isinstance(expr, AllOf) else "any"
    return _GroupPlan(kind, tuple(_plan_expr(item) for item in expr.items), compile_expr(expr))


def _rule_plan(rule: _Rule) -> _RulePlan:
    plan = rule.trace_plan
    if plan is None:  # a race builds it twice, harmlessly
        plan = rule.trace_plan = _RulePlan(rule)
    return plan


# ---------------------------------------------------------------------------
# The trace of one call
# ---------------------------------------------------------------------------


def decision_trace(
    policy: CompiledPolicy,
    call: Call,
    totals: Mapping[str, Any] | None,
    decision: Decision,
    plan: PlanFeatures | None = None,
) -> dict[str, Any]:
    """The evaluation trace of ``decision`` (as ``evaluate`` and ``plan_gate`` made it for
    ``call`` with ``totals``): plain JSON, bounded (see the module's docstring)."""
    rules = policy.rules_for(call)
    applied = {id(matched.rule): matched.effect for matched in decision.matched}
    deciding = decision.rule
    room = [TRACE_MAX_CONDITIONS]
    traced: list[dict[str, Any]] = []
    for index, rule in enumerate(rules):
        decides = deciding is not None and rule.spec is deciding
        if index >= TRACE_MAX_RULES and not decides:
            continue
        node = _rule_trace(rule, call, totals, room)
        node["outcome"] = applied.get(id(rule.spec))
        if decides:
            node["decides"] = True
        traced.append(node)
    trace: dict[str, Any] = {"v": TRACE_VERSION, "rules": traced, "decision": decision.decision}
    if len(rules) > len(traced):
        trace["rules_omitted"] = len(rules) - len(traced)
    if deciding is None:
        trace["default"] = policy.default
    else:
        effect = applied.get(id(deciding))
        if effect is not None and effect != decision.decision:
            gate: dict[str, Any] = {"from": effect}
            if plan is not None:
                if not plan.approvals_enabled:
                    gate["needs"] = plan.approvals_plan
                else:
                    gate["needs"] = plan.quorum_plan
                    gate["approvals"] = deciding.approvals_required
            trace["plan_gate"] = gate
    return trace


def _rule_trace(
    rule: _Rule, call: Call, totals: Mapping[str, Any] | None, room: list[int]
) -> dict[str, Any]:
    plan = _rule_plan(rule)
    node = dict(plan.head)
    holds: bool | None = True
    if plan.when is not None:
        node["when"], holds = _expr_trace(plan.when, call, room)
    exception: bool | None = False
    if plan.unless:
        found = [_expr_trace(item, call, room) for item in plan.unless]
        node["unless"] = [item for item, _ in found]
        exception = _any3(result for _, result in found)
    # As _Rule.applies: ``when`` and not ``unless``, three-valued.
    if holds is False or exception is True:
        applies: bool | None = False
    elif holds is None or exception is None:
        applies = None
    else:
        applies = True
    node["applies"] = _RESULT[applies]
    if applies is True:
        if rule.spec.max_amount is not None:
            node["max_amount"] = _amount_trace(rule, call)
        if rule.spec.limit is not None:
            node["limit"] = _limit_trace(rule, call, totals)
    return node


def _expr_trace(plan: Any, call: Call, room: list[int]) -> tuple[dict[str, Any], bool | None]:
    if room[0] <= 0:
        result = plan.test(call)
        return {"omitted": plan.count, "result": _RESULT[result]}, result
    kind = type(plan)
    if kind is _CondPlan:
        room[0] -= 1
        subject = plan.get(call)
        result = plan.judge(subject)
        node = dict(plan.base)
        if subject is not _MISSING and subject is not _AMBIGUOUS:
            node["saw"] = show(subject)
        node["result"] = _RESULT[result]
        if result is None:
            node["why"] = _undecided_code(plan.cond, subject)
        return node, result
    if kind is _NotPlan:
        inner, inner_result = _expr_trace(plan.item, call, room)
        result = _not3(inner_result)
        return {"not": inner, "result": _RESULT[result]}, result
    items: list[dict[str, Any]] = []
    results: list[bool | None] = []
    rest = 0
    for item in plan.items:
        if room[0] <= 0:  # the rest of the group is counted in one entry
            rest += item.count
            results.append(item.test(call))
            continue
        traced, result = _expr_trace(item, call, room)
        items.append(traced)
        results.append(result)
    if rest:
        items.append({"omitted": rest})
    result = _all3(results) if plan.kind == "all" else _any3(results)
    return {plan.kind: items, "result": _RESULT[result]}, result


def _undecided_code(cond: Cond, subject: Any) -> str:
    """Why a condition was undecidable (as ``agents.policy._undecided_why``), as a code."""
    if subject is _MISSING:
        return "missing"
    if subject is _AMBIGUOUS:
        return "ambiguous"
    if isinstance(subject, _Many):
        return "element"
    if cond.op == "matches" and isinstance(subject, str):
        return "unsafe"
    return "type"


def _amount_code(raw: Any) -> tuple[str | None, Decimal | None]:
    """(why an amount is unusable, or None; the amount)."""
    if raw is _MISSING:
        return "missing", None
    if raw is _AMBIGUOUS or isinstance(raw, _Many):
        return "ambiguous", None
    amount = to_decimal(raw)
    if amount is None:
        return "not_a_number", None
    if amount < 0:
        return "negative", amount
    return None, amount


def _amount_trace(rule: _Rule, call: Call) -> dict[str, Any]:
    spec = rule.spec
    assert rule.get_amount is not None and spec.max_amount is not None
    raw = rule.get_amount(call)
    field = _cut(spec.amount_field)
    if type(raw) is int and 0 <= raw < _PLAIN_INT:  # the usual amount: no Decimal needed
        return {
            "field": field,
            "max": rule.max_amount_text,
            "saw": str(raw),
            "within": raw <= spec.max_amount,
        }
    node: dict[str, Any] = {"field": field, "max": rule.max_amount_text}
    problem, amount = _amount_code(raw)
    if amount is not None:
        node["saw"] = number_text(amount)
    elif raw is not _MISSING and raw is not _AMBIGUOUS:
        node["saw"] = show(raw)
    if problem is not None:
        node["problem"] = problem
        node["within"] = False
    else:
        assert amount is not None
        node["within"] = amount <= spec.max_amount
    return node


def _limit_trace(rule: _Rule, call: Call, totals: Mapping[str, Any] | None) -> dict[str, Any]:
    """As ``_Rule._limit_outcome``: the total before the call, what it adds, the limit."""
    spec = rule.spec
    limit = spec.limit
    assert limit is not None and rule.limit_texts is not None
    window, over_text = rule.limit_texts
    node: dict[str, Any] = {"kind": limit.kind, "per": window}
    if limit.kind == "count":
        node["count"] = limit.count
    else:
        node["field"] = _cut(limit.field or "")
        node["over"] = over_text
    problem: str | None = None
    if rule.get_by is not None:
        node["by"] = _cut(limit.by or "")
        key = rule.get_by(call)
        if key is _MISSING:
            problem = "key_missing"
        else:
            node["key"] = show(key)
            if budget_key_value(key) is None:
                problem = "key_not_plain"
    amount: Decimal | None = Decimal(1)
    if problem is None and limit.kind == "sum":
        assert rule.get_limit_field is not None
        raw = rule.get_limit_field(call)
        problem, amount = _amount_code(raw)
        if amount is not None:
            node["amount"] = number_text(amount)
        elif raw is not _MISSING and raw is not _AMBIGUOUS:
            node["saw"] = show(raw)
    elif limit.kind == "count":
        node["amount"] = "1"
    if problem is None and rule.recounting:
        problem = "recounting"
    total = None
    if problem is None:
        raw_total = totals.get(spec.id) if totals is not None else None
        total = to_decimal(raw_total) if raw_total is not None else None
        if total is None:
            problem = "unavailable"
    if problem is not None:
        node["problem"] = problem
        node["within"] = False
        return node
    assert total is not None and amount is not None
    node["total"] = number_text(total)
    if limit.kind == "count":
        assert limit.count is not None
        node["within"] = int(total) + 1 <= limit.count
    else:
        assert limit.over is not None
        node["within"] = total + amount <= limit.over
    return node


# ---------------------------------------------------------------------------
# In plain words
# ---------------------------------------------------------------------------

_OP_WORDS = {
    "eq": "=",
    "ne": "!=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "icontains": "contains (any case)",
    "startswith": "starts with",
    "endswith": "ends with",
    "matches": "matches",
    "ieq": "equals (any case)",
    "cidr": "is in network",
    "email_domain_in": "has an email domain in",
}
_AMOUNT_PROBLEMS = {
    "missing": "is missing",
    "ambiguous": "is ambiguous",
    "not_a_number": "is not a number",
    "negative": "is negative",
}


def trace_explain(trace: Any) -> list[str]:
    """A stored trace in plain words: one line per traced rule, then how the decision was
    reached. A check without a trace, or with one this code cannot read, gets one line
    saying so."""
    if not trace:
        return [NO_EXPLANATION]
    try:
        if not isinstance(trace, Mapping) or trace.get("v") != TRACE_VERSION:
            return [UNREADABLE]
        return _explain(trace)
    except (AttributeError, KeyError, TypeError, ValueError):
        return [UNREADABLE]


def _explain(trace: Mapping[str, Any]) -> list[str]:
    lines = [_rule_line(rule) for rule in trace["rules"]]
    omitted = trace.get("rules_omitted")
    if omitted:
        lines.append(f"{_count(omitted, 'more rule')} matched the action (not traced)")
    decision = trace["decision"]
    if "default" in trace:
        lead = "no rule applies" if trace["rules"] else "no rule matches this action"
        lines.append(f"{lead}: the agent's default ({trace['default']}) applies -> {decision}")
        return lines
    deciding = next((rule for rule in trace["rules"] if rule.get("decides")), None)
    gate = trace.get("plan_gate")
    if gate:
        needs = gate.get("needs")
        if needs and gate.get("approvals"):
            why = f"{gate['approvals']} approvals need the {needs} plan or higher"
        elif needs:
            why = f"approvals need the {needs} plan or higher"
        else:
            why = "the organisation's plan cannot hold it"
        lines.append(f"plan: {gate['from']} -> {decision}, because {why}")
    if deciding is not None:
        lines.append(f"decision: {decision} (rule '{deciding['rule']}')")
    else:
        lines.append(f"decision: {decision}")
    return lines


def _rule_line(rule: Mapping[str, Any]) -> str:
    parts = []
    if "when" in rule:
        parts.append("when " + _expr_words(rule["when"]))
    for item in rule.get("unless", ()):
        parts.append("unless " + _expr_words(item))
    if "max_amount" in rule:
        parts.append(_amount_words(rule["max_amount"]))
    if "limit" in rule:
        parts.append(_limit_words(rule["limit"]))
    if not parts:
        parts.append(f"action matches {rule['action']}")
    return f"{rule['rule']}: {'; '.join(parts)} -> {_verdict(rule)}"


def _verdict(rule: Mapping[str, Any]) -> str:
    outcome = rule.get("outcome")
    applies = rule.get("applies")
    effect = rule.get("effect")
    if outcome is None:
        if applies == FAILED:
            return "does not apply"
        if applies == UNDECIDABLE:
            return "does not apply (an allow rule allows only when its conditions are decided)"
        return "does not apply (an allow rule allows only within its limits)"
    if applies == UNDECIDABLE:
        return f"{outcome} (undecidable, so the rule applies: fail closed)"
    if outcome == ALLOW and effect in (REQUIRES_APPROVAL, BLOCK):
        return "no effect"
    return outcome


def _expr_words(node: Mapping[str, Any]) -> str:
    if "omitted" in node:
        text = f"{_count(node['omitted'], 'more condition')} (not traced)"
        return f"{text} {node['result']}" if "result" in node else text
    if "not" in node:
        return f"not [{_expr_words(node['not'])}] {node['result']}"
    for kind in ("all", "any"):
        if kind in node:
            inner = ", ".join(_expr_words(item) for item in node[kind])
            return f"{kind} of [{inner}] {node['result']}"
    return _cond_words(node)


def _cond_words(node: Mapping[str, Any]) -> str:
    field, op, result = node["field"], node["op"], node["result"]
    saw = node.get("saw")
    if op == "exists":
        wanted = node["value"] == "true"
        claim = f"{field} {'exists' if wanted else 'does not exist'}"
    else:
        shown = f"{field} {saw}" if saw is not None else field
        claim = f"{shown} {_OP_WORDS.get(op, op)} {node['value']}"
    if result != UNDECIDABLE:
        return f"{claim} {result}"
    return f"{claim} undecidable ({_undecided_words(node)})"


def _undecided_words(node: Mapping[str, Any]) -> str:
    why, field, op = node.get("why"), node["field"], node["op"]
    if why == "missing":
        return f"{field} is missing"
    if why == "ambiguous":
        return f"{field} is given both as a dotted key and as a nested path"
    if why == "element":
        return f"an element of {field} is missing or not comparable"
    if why == "unsafe":
        return "the pattern could not be run safely on this input"
    needs = _OP_NEEDS.get(op)
    if needs is not None:
        return f"{field} is not {needs}"
    return f"{field} cannot be compared with {_OP_WORDS.get(op, op)}"


def _amount_words(node: Mapping[str, Any]) -> str:
    field, limit = node["field"], grouped(node["max"])
    problem = node.get("problem")
    if problem:
        words = _AMOUNT_PROBLEMS.get(problem, problem)
        return f"{_subject(node)} {words}, so max_amount {limit} cannot be checked"
    sign = "<=" if node["within"] else ">"
    return f"{field} {grouped(node['saw'])} {sign} max_amount {limit}"


def _limit_words(node: Mapping[str, Any]) -> str:
    window = node["per"]
    if node["kind"] == "count":
        what = f"{node['count']} calls per {window}"
        limit = grouped(str(node["count"]))
    else:
        what = f"{node['field']} per {window}"
        limit = grouped(node["over"])
    if "by" in node:
        what += f" for {node['by']} {node['key']}" if "key" in node else f" by {node['by']}"
    problem = node.get("problem")
    if problem:
        if problem == "key_missing":
            why = f"{node['by']} is missing"
        elif problem == "key_not_plain":
            why = f"{node['by']} is not a plain value"
        elif problem == "recounting":
            why = "the running total is being recounted from the audit log"
        elif problem == "unavailable":
            why = "the running total is unavailable"
        else:
            why = f"{_subject(node)} {_AMOUNT_PROBLEMS.get(problem, problem)}"
        return f"{why}, so the limit ({what}) cannot be checked"
    sign = "<=" if node["within"] else ">"
    return f"{grouped(node['total'])} + {grouped(node['amount'])} {sign} {limit} ({what})"


def _subject(node: Mapping[str, Any]) -> str:
    """An amount's field and, when it was there, the value seen: `amount "ten"`."""
    field = node.get("field") or "the amount"
    return f"{field} {node['saw']}" if "saw" in node else field


def grouped(number: str) -> str:
    """`1840.5` -> `1,840.5`: digits grouped in thousands; anything else unchanged."""
    text = str(number)
    sign = "-" if text.startswith("-") else ""
    whole, dot, fraction = text.lstrip("-").partition(".")
    if not whole.isdigit() or len(whole) <= 3:
        return text
    return f"{sign}{int(whole):,}{dot}{fraction}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
