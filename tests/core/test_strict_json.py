"""The one strict JSON reader (wardenproject.strictjson): what it refuses, the field it names
for each refusal, and that ordinary JSON reads exactly as json.loads reads it."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wardenproject.errors import PayloadTooLarge, ValidationFailed
from wardenproject.strictjson import MAX_DEPTH, StrictJSONParser, json_parse


def refusal(raw: bytes | str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        json_parse(raw)
    return caught.value


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action": "kb.search", "arguments": {"amount": 42, "customer": {"tier": "vip"}}}',
        b'{"a": [1, 2.5, -0, 1e300, -1e-300, true, false, null, "x"]}',
        b'{"big": 123456789012345678901234567890}',
        '{"text": "caf\u00e9 \u65e5\u672c \U0001f600"}'.encode(),
        b'{"escaped": "caf\\u00e9 \\ud83d\\ude00"}',  # a surrogate *pair* is one character
        b'{"backslash": "\\\\u0000 is text, not a NUL"}',
        b'{"controls": "tab\\there, newline\\n"}',
        b"[]",
        b'"just a string"',
        b"  {}  \n",
    ],
)
def test_ordinary_json_reads_as_json_loads_reads_it(raw):
    assert json_parse(raw) == json.loads(raw)


def test_a_utf8_byte_order_mark_is_skipped():
    assert json_parse(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_nesting_up_to_the_limit_is_accepted():
    raw = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert json_parse(raw) is not None


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b'{"action": "a\\u0000b"}', "action", "NUL"),
        (
            b'{"arguments": {"items": [0, 1, {"note": "x\\u0000"}]}}',
            "arguments.items[2].note",
            "NUL",
        ),
        (b'{"arguments": {"items": [0, 1, {"no\\u0000te": 1}]}}', "arguments.items[2]", "NUL"),
        (b'{"k\\u0000": 1}', None, "NUL"),
        (b'"\\u0000"', None, "NUL"),
        (b'{"session_id": "\\ud800"}', "session_id", "surrogate"),
        (b'{"a": ["ok", "\\udc00\\ud800"]}', "a[1]", "surrogate"),
        (b'{"a": {"\\udfff": 1}}', "a", "surrogate"),
        (b'{"arguments": {"amount": 1e999}}', "arguments.amount", "finite"),
        (b'{"arguments": {"amount": -1e999}}', "arguments.amount", "finite"),
        (b'{"x": [1, 2, ' + b"1" * 400 + b".0]}", "x[2]", "finite"),
    ],
)
def test_a_refused_value_is_a_400_naming_its_json_path(raw, field, words):
    error = refusal(raw)
    assert error.status == 400
    assert error.code == "invalid"
    assert error.field == field
    assert words in error.detail


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"action": "caf\xe9"}', "action"),  # Latin-1, not UTF-8
        (b'{"a": {"b": "\xed\xa0\x80"}}', "a.b"),  # an encoded surrogate (CESU-8)
        (b'{"a": ["\xff\xfe"]}', "a[0]"),
        (b'{"k\xc3": 1}', None),
    ],
)
def test_bytes_that_are_not_utf8_are_a_400_naming_the_field(raw, field):
    error = refusal(raw)
    assert error.code == "invalid_json"
    assert error.field == field
    assert "UTF-8" in error.detail


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"amount": NaN}', "amount"),
        (b'{"a": [Infinity]}', "a[0]"),
        (b'{"a": {"b": -Infinity}}', "a.b"),
    ],
)
def test_nan_and_infinity_literals_are_refused_naming_the_field(raw, field):
    error = refusal(raw)
    assert error.code == "invalid_json"
    assert error.field == field


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 10_000, 100_000])
def test_nesting_past_the_limit_is_refused_at_the_path_where_it_passes(depth):
    arrays = "[" * depth + "]" * depth
    error = refusal(arrays)
    assert error.code == "invalid"
    assert error.field == "[0]" * MAX_DEPTH
    assert str(MAX_DEPTH) in error.detail

    objects = '{"a": ' * depth + "1" + "}" * depth
    error = refusal(objects)
    assert error.field == ".".join(["a"] * MAX_DEPTH)


def test_nesting_is_counted_through_mixed_containers_with_brackets_in_strings():
    inner = '{"s": "[[[{{{", "list": [' * (MAX_DEPTH // 2) + "0" + "]}" * (MAX_DEPTH // 2)
    assert json_parse(inner) is not None
    deeper = '{"s": "]]]}}}", "list": [' * MAX_DEPTH + "0" + "]}" * MAX_DEPTH
    error = refusal(deeper)
    assert error.field == ".".join(["list[0]"] * (MAX_DEPTH // 2))


def test_brackets_in_strings_cannot_hide_nesting_past_the_limit():
    # A stray "]" before and a "[" after each level would balance the brackets without it.
    raw = "1"
    for _ in range(MAX_DEPTH + 1):
        raw = '{"a": "]", "b": ' + raw + ', "c": "["}'
    assert refusal(raw).field == ".".join(["b"] * MAX_DEPTH)


@pytest.mark.parametrize("quote", ['\\"', "\\\\"])
def test_nesting_is_counted_right_with_escaped_quotes_and_backslashes(quote):
    shallow = '{"q": "say ' + quote + '[[", "rows": [' + ",".join(['{"a": [1]}'] * 100) + "]}"
    assert len(json_parse(shallow)["rows"]) == 100
    deep = '{"q": "' + quote + ']", "b": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
    assert refusal(deep).field == "b" + "[0]" * (MAX_DEPTH - 1)


def test_many_containers_that_are_not_deep_are_accepted():
    raw = json.dumps({"rows": [{"id": i, "tags": ["a", {"b": []}]} for i in range(500)]})
    assert json_parse(raw.encode()) == json.loads(raw)


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"   ", b'{"a": 1,}', b'{"a": "tab\there"}', b"\x00"]
)
def test_text_that_is_not_json_is_invalid_json(raw):
    assert refusal(raw).code == "invalid_json"


def test_utf16_is_not_accepted():
    assert refusal('{"a": 1}'.encode("utf-16")).code == "invalid_json"


def test_the_drf_parser_reads_through_the_same_rules():
    parser = StrictJSONParser()
    assert parser.parse(io.BytesIO(b'{"a": [1]}')) == {"a": [1]}
    with pytest.raises(ValidationFailed) as caught:
        parser.parse(io.BytesIO(b'{"a": {"b": "\\u0000"}}'))
    assert caught.value.field == "a.b"


def test_the_drf_parser_refuses_a_body_over_the_limit(settings):
    settings.WARDEN_MAX_BODY_BYTES = 1024
    with pytest.raises(PayloadTooLarge):
        StrictJSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 2000 + b'"}'))


def true_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((true_depth(v) for v in value), default=0)
    return 0


bracket_text = st.text(alphabet='[]{}"\\ab', max_size=6)
nested = st.recursive(
    st.one_of(st.integers(), bracket_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(bracket_text, inner, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=300, database=None, deadline=None)
@given(document=nested, extra=st.integers(min_value=0, max_value=70))
def test_the_depth_rule_matches_the_true_depth_of_any_document(document, extra):
    # Wrapped in `extra` more levels so that documents on both sides of the limit occur;
    # each wrapper puts a stray "]" before and a "[" after the level, in strings.
    for level in range(extra):
        document = {"k]": document, "[": "x"} if level % 2 else ["]", document, "["]
    raw = json.dumps(document)
    if true_depth(document) <= MAX_DEPTH:
        assert json_parse(raw.encode()) == document
    else:
        assert refusal(raw.encode()).code == "invalid"
