"""Fuzzing the endpoints agents and reviewers call with odd and malformed JSON: whatever
arrives, the answer is JSON with a 2xx or 4xx status, never a 5xx.

The bodies mix the endpoints' real fields (so many reach the services and the database)
with hostile values: NUL characters, lone surrogates, control characters, huge and
non-finite numbers, deep nesting, raw bytes that are not UTF-8. Run it on PostgreSQL too:
that is where NUL characters and lone surrogates are refused.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Plan
from agents import services
from tests.agents.conftest import keys_for
from tests.approvals.conftest import request_create
from wardenproject.strictjson import MAX_DEPTH

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,  # no example database written into the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

odd_text = st.one_of(
    st.text(max_size=30),
    st.text(
        alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12
    ),
    st.sampled_from(
        ["\x00", "a\x00b", "\ud800", "\udfff", "\udc00\ud800", "\x7f\x1b[31m", "\u202e", "", " "]
    ),
    st.text(alphabet=string.printable, max_size=250),
)
odd_number = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 2**63, -(2**63) - 1, 1e308, 5e-324]),
)
scalar = st.one_of(st.none(), st.booleans(), odd_number, odd_text)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)
    ),
    max_leaves=12,
)

FIELDS = [
    "action",
    "arguments",
    "agent",
    "session_id",
    "metadata",
    "tool_name",
    "args",
    "kwargs",
    "agent_id",
    "context",
    "status",
    "message",
    "notes",
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["fields", "value", "deep", "bytes", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 3_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
        inner = opener * depth + "1" + closer * depth
        return ('{"action": "kb.search", "arguments": ' + inner + "}").encode()
    if kind == "value":
        document: Any = draw(json_value)
    else:
        document = draw(st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=6))
        if draw(st.booleans()):
            document.setdefault("action", "kb.search")
            document.setdefault("tool_name", "kb.search")
    # allow_nan writes NaN/Infinity; surrogates go out as \\ud800 escapes (ensure_ascii).
    text = json.dumps(document, ensure_ascii=draw(st.booleans()), allow_nan=True)
    raw = text.encode("utf-8", "surrogatepass")
    if kind == "mutated" and raw:
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at + 1 :]
    return raw


@pytest.fixture
def fuzz_world(org_a, alice):
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=1_000_000)
    agent = services.agent_create(organization=org_a, actor=alice, name="support-bot")
    keys = keys_for(agent, alice)
    pending = request_create(agent, environment="live")
    return keys, pending.action_id


def assert_json_not_5xx(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/json", response.content[:200]
    response.json()


ENDPOINTS = [
    ("/api/v1/check", "live"),
    ("/policy/check", "live"),
    ("/sdk/check", "org"),
    ("/sdk/log", "org"),
    ("/api/v1/actions/{action}/outcome", "live"),
    ("/approve/{action}", "approver"),
    ("/deny/{action}", "approver"),
    ("/api/v1/actions/{action}/approve", "approver"),
    ("/api/v1/actions/{action}/deny", "approver"),
]


@pytest.mark.parametrize(("path", "who"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_no_body_gets_a_5xx(fuzz_world, path, who):
    keys, action_id = fuzz_world
    client = Client(raise_request_exception=False)
    url = path.format(action=action_id)
    key = getattr(keys, who)

    @FUZZ
    @given(raw=bodies())
    def post(raw: bytes) -> None:
        response = client.post(url, data=raw, content_type="application/json", HTTP_X_API_KEY=key)
        assert_json_not_5xx(response)

    post()


def test_no_action_id_in_the_status_url_gets_a_5xx(fuzz_world):
    from urllib.parse import quote

    keys, _ = fuzz_world
    client = Client(raise_request_exception=False)

    @FUZZ
    @given(
        action_id=st.one_of(
            st.text(min_size=1, max_size=40),
            st.sampled_from(["act_\x00", "\x00", "act_\x7f", "act_" + "x" * 5000, "\u202e"]),
        ),
        raw_query=st.sampled_from(["", "?wait=%00", "?wait=1e999", "?wait=nan", "?x=%ff%fe"]),
    )
    def get(action_id: str, raw_query: str) -> None:
        quoted = quote(action_id.encode("utf-8", "surrogatepass"), safe="")
        for path in (f"/status/{quoted}", f"/api/v1/actions/{quoted}{raw_query}"):
            assert_json_not_5xx(client.get(path, HTTP_X_API_KEY=keys.live))

    get()
