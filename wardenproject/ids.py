"""Opaque public identifiers: a short type prefix and random base62 text."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def public_id(prefix: str, length: int = 20) -> str:
    return f"{prefix}_{random_token(length)}"
