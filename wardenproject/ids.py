"""Opaque public identifiers: a short type prefix and random base62 text."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.digits + string.ascii_letters


def random_token(length: int) -> str:
    """``length`` base62 characters from the OS's CSPRNG.

    Encodes one random integer instead of drawing characters one by one: this is on the hot
    path of every check, and a per-character ``secrets.choice`` costs ~5 µs each.
    """
    # 6 bits of randomness per character, so the modulo bias of base62 is negligible.
    value = int.from_bytes(secrets.token_bytes(length * 6 // 8 + 2), "big")
    chars = []
    for _ in range(length):
        value, index = divmod(value, 62)
        chars.append(_ALPHABET[index])
    return "".join(chars)


def public_id(prefix: str, length: int = 20) -> str:
    return f"{prefix}_{random_token(length)}"
