"""The one strict reader of every JSON body the API accepts.

``json_parse(raw)`` reads a body as JSON and refuses, with a 400 that names the field by its
JSON path (``arguments.items[2].note``; for a bad key, the path of the object holding it;
``None`` at the top level):

- bytes that are not UTF-8 (``invalid_json``; a UTF-8 byte-order mark is skipped);
- text that is not JSON (``invalid_json``), ``NaN`` and ``Infinity`` included;
- NUL characters (``\\u0000``) and lone surrogates (``\\ud800`` without its pair), in keys
  and in strings (``invalid``): PostgreSQL refuses both, in text and in ``jsonb``;
- numbers too large for a float, which Python reads as infinity (``1e999``; ``invalid``);
- arrays and objects nested more than ``MAX_DEPTH`` deep (``invalid``).

``body_bytes`` is the size limit every body passes first (413 ``too_large``), and
``StrictJSONParser`` is the DRF parser (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``) that
reads DRF views' bodies through both.

The check endpoints read every tool call through this, so the common case costs what
``json.loads`` costs plus a few scans in C: a UTF-8 decode, two bracket counts and a search
for ``\\u``. A NUL or a surrogate can only come from a ``\\u0000`` or ``\\ud800``-style
escape (JSON refuses raw control characters in strings, and strict UTF-8 has no
surrogates), and nesting can only pass the limit in a body with more brackets than the
limit. Bodies with such an escape (emoji, sent as surrogate pairs) or that many brackets get
a second look, in C as well (``_holds_bad_text``, ``_nests_too_deep``); the value is walked
in Python, to name the field, only when that look finds something or the parse stops.
"""

from __future__ import annotations

import codecs
import json
import re
from itertools import compress
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from rest_framework.parsers import BaseParser

from wardenproject.errors import PayloadTooLarge, ValidationFailed

# Deepest nesting of arrays and objects accepted in a body (the top-level object is 1).
MAX_DEPTH = 64

_BOM = codecs.BOM_UTF8
# The escapes that can decode to a NUL or to a (lone) surrogate.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
# For counting levels: every bracket as [ or ], quotes kept, everything else deleted.
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS_OR_QUOTES = bytes(byte for byte in range(256) if byte not in b'[]{}"')
_IS_CONTAINER_TYPE = frozenset({dict, list}).__contains__
# Strings (unrolled, linear) and the structural characters of JSON text.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')


class _Stop(Exception):
    """The fast parse met a number it refuses; the slow path finds out where."""


class _Literal(float):
    """``NaN``, ``Infinity`` or ``-Infinity`` as written (not JSON), read by the slow path."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan
        raise _Stop
    return value


def _stop(name: str) -> Any:
    raise _Stop


_STRICT = json.JSONDecoder(parse_float=_finite_float, parse_constant=_stop)
_LENIENT = json.JSONDecoder(parse_constant=lambda name: _Literal(name))
_WRITER = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def json_parse(raw: bytes | str) -> Any:
    """The JSON value of ``raw``, or ``ValidationFailed`` (400) naming the field."""
    if isinstance(raw, bytes):
        if raw[:3] == _BOM:
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _refusal(raw.decode("utf-8", "surrogateescape"), undecodable=True) from None
        source = raw
        suspect = b"\\u" in raw and _SUSPECT_ESCAPE.search(text) is not None
    else:
        text = raw
        source = raw.encode("utf-8", "surrogatepass")
        suspect = bool(_BAD_CHARACTER.search(text) or _SUSPECT_ESCAPE.search(text))
    try:
        value = _STRICT.decode(text)
    except (_Stop, RecursionError):
        raise _refusal(text) from None
    except ValueError as exc:
        raise ValidationFailed(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if (suspect and _holds_bad_text(value)) or (
        source.count(b"[") + source.count(b"{") > MAX_DEPTH and _nests_too_deep(source, value)
    ):
        problem = _problem(value, [], 1, undecodable=False)
        if problem is not None:
            raise problem
    return value


def _holds_bad_text(value: Any) -> bool:
    """Whether a key or string of ``value`` holds a NUL or a lone surrogate, answered in C:
    the value written back as JSON text without escaping non-ASCII (NUL comes out as
    \\u0000, which a literal backslash-u0000 also matches: the walk then tells them apart),
    and that text encoded to UTF-8 (a lone surrogate cannot be)."""
    try:
        text = _WRITER.encode(value)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\\u0000" in text


def _nests_too_deep(source: bytes, value: Any) -> bool:
    """Whether the JSON text ``source`` (already parsed into ``value``) nests past
    ``MAX_DEPTH``. Answered in C from the text when it has no escaped quote (every quote then
    delimits a string): with the strings cut out and the brackets alone left, the innermost
    pairs are removed round by round, one round per level. Otherwise from the value."""
    if b'\\"' in source:
        return _value_too_deep(value)
    # Brackets and quotes alone; then strings without brackets (most) go as "" pairs, and
    # what is left between quotes is cut out. (Removing a closing quote and the next opening
    # one keeps every bracket on its side of the quotes: nothing structural was between.)
    skeleton = source.translate(_ONE_BRACKET, _NOT_BRACKETS_OR_QUOTES).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = b"".join(skeleton.split(b'"')[::2])
    for _ in range(MAX_DEPTH):
        reduced = skeleton.replace(b"[]", b"")
        if not reduced:
            return False
        skeleton = reduced
    return True


def _value_too_deep(value: Any) -> bool:
    """Whether ``value`` has containers below level ``MAX_DEPTH``, level by level (the
    containers of each level picked out in C)."""
    level = [value] if type(value) in (dict, list) else []
    for _ in range(MAX_DEPTH):
        if not level:
            return False
        below: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            below.extend(compress(items, map(_IS_CONTAINER_TYPE, map(type, items))))
        level = below
    return bool(level)


def _refusal(text: str, *, undecodable: bool = False) -> ValidationFailed:
    """Why ``text`` is refused, with the field: it is parsed again, leniently (NaN,
    infinities and the escaped bytes of undecodable text read as values), and walked."""
    not_utf8 = ValidationFailed("The body is not valid UTF-8.", code="invalid_json")
    try:
        value = _LENIENT.decode(text)
    except RecursionError:
        return _too_deep(_deep_path(text) or [])
    except ValueError as exc:
        if undecodable:
            return not_utf8
        return ValidationFailed(f"The body is not valid JSON: {exc}", code="invalid_json")
    problem = _problem(value, [], 1, undecodable=undecodable)
    if problem is not None:
        return problem
    return not_utf8 if undecodable else ValidationFailed("The body is not valid JSON.")


def _problem(value: Any, path: list[str | int], depth: int, *, undecodable: bool) -> Any:
    """The first refusal found in ``value`` (depth first), or None."""
    if isinstance(value, str):
        return _bad_text(value, path, key=False, undecodable=undecodable)
    if isinstance(value, float):
        if isinstance(value, _Literal):
            return ValidationFailed(
                f"{_where(path)} is NaN or Infinity, which is not JSON.",
                code="invalid_json",
                field=_field(path),
            )
        if value - value != 0.0:
            return ValidationFailed(
                f"{_where(path)} is not a finite number (too large: it reads as infinity).",
                field=_field(path),
            )
        return None
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            return _too_deep(path)
        for key, item in value.items():
            problem = _bad_text(key, path, key=True, undecodable=undecodable)
            if problem is None and isinstance(item, (str, float, dict, list)):
                path.append(key)
                problem = _problem(item, path, depth + 1, undecodable=undecodable)
                path.pop()
            if problem is not None:
                return problem
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            return _too_deep(path)
        for index, item in enumerate(value):
            if isinstance(item, (str, float, dict, list)):
                path.append(index)
                problem = _problem(item, path, depth + 1, undecodable=undecodable)
                path.pop()
                if problem is not None:
                    return problem
    return None


def _bad_text(
    text: str, path: list[str | int], *, key: bool, undecodable: bool
) -> ValidationFailed | None:
    found = _BAD_CHARACTER.search(text)
    if found is None:
        return None
    where = f"A key of {_where(path, lower=True)}" if key else _where(path)
    character = found.group()
    if character == "\x00":
        return ValidationFailed(
            f"{where} contains a NUL character (\\u0000), which is not accepted.",
            field=_field(path),
        )
    if undecodable:
        return ValidationFailed(
            f"{where} is not valid UTF-8.", code="invalid_json", field=_field(path)
        )
    return ValidationFailed(
        f"{where} contains a lone surrogate (\\u{ord(character):04x}), which is not a "
        "character: a surrogate must be followed by its pair.",
        field=_field(path),
    )


def _too_deep(path: list[str | int]) -> ValidationFailed:
    return ValidationFailed(
        f"The body is nested more than {MAX_DEPTH} levels deep (at {_where(path, lower=True)}).",
        field=_field(path),
    )


def _deep_path(text: str) -> list[str | int] | None:
    """Where the first array or object past ``MAX_DEPTH`` opens, read from the text itself
    (without recursion) for bodies too deep for the parser."""
    stack: list[list[Any]] = []  # per open container: [is_object, current key or index]
    last_string = '""'
    for match in _TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"':
            last_string = token
        elif first in "[{":
            if len(stack) == MAX_DEPTH:
                return [entry[1] for entry in stack]
            stack.append([first == "{", None if first == "{" else 0])
        elif first in "]}":
            if stack:
                stack.pop()
        elif first == ":":
            if stack and stack[-1][0]:
                stack[-1][1] = _key_text(last_string)
        elif stack and not stack[-1][0]:  # a comma in an array
            stack[-1][1] += 1
    return None


def _key_text(token: str) -> str:
    try:
        key = json.loads(token)
    except ValueError:
        key = token[1:-1]
    return _BAD_CHARACTER.sub("\ufffd", key)


def _field(path: list[str | int]) -> str | None:
    parts: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        else:
            parts.append(f".{segment}" if parts else segment)
    return "".join(parts) or None


def _where(path: list[str | int], *, lower: bool = False) -> str:
    field = _field(path)
    if field is None:
        return "the body" if lower else "The body"
    return field


def body_bytes(request: Any, limit: int | None = None) -> bytes:
    """The raw body of a Django or DRF request, refused with 413 when Content-Length or the
    actual size passes ``limit`` (default ``WARDEN_MAX_BODY_BYTES``), before anything parses
    it; Django's own limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``) is answered the same way."""
    limit = limit or settings.WARDEN_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH")
    if declared:
        try:
            too_large = int(declared) > limit
        except ValueError:
            raise ValidationFailed("Content-Length is not a number.") from None
        if too_large:
            raise PayloadTooLarge.over(limit)
    try:
        raw = getattr(request, "_request", request).body
    except RequestDataTooBig:
        raise PayloadTooLarge.over(limit) from None
    if len(raw) > limit:
        raise PayloadTooLarge.over(limit)
    return raw


class StrictJSONParser(BaseParser):
    """DRF's parser for ``application/json`` bodies: ``body_bytes`` then ``json_parse``."""

    media_type = "application/json"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: dict | None = None
    ) -> Any:
        request = (parser_context or {}).get("request")
        if isinstance(getattr(request, "_request", request), HttpRequest):
            return json_parse(body_bytes(request))
        limit = settings.WARDEN_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge.over(limit)
        return json_parse(raw)
