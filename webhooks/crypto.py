"""Encryption at rest for endpoint signing secrets (stdlib only).

Signing secrets must be usable, so they cannot be hashed. They are stored as
``enc1:<base64(nonce | ciphertext | tag)>``: the keystream is HMAC-SHA256(enc_key,
nonce | counter) (a PRF in counter mode) and the tag HMAC-SHA256(mac_key, nonce |
ciphertext) (encrypt-then-MAC). Both keys are derived from ``SECRET_KEY``; rotating
``SECRET_KEY`` makes stored secrets unreadable (rotate the webhook secrets then).
A value without the prefix is read as plaintext (rows written before encryption).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings

PREFIX = "enc1:"
_NONCE = 16
_TAG = 32


class SecretUnreadable(Exception):
    pass


def _keys() -> tuple[bytes, bytes]:
    master = hashlib.sha256(f"warden.webhooks.secrets|{settings.SECRET_KEY}".encode()).digest()
    enc = hmac.new(master, b"encrypt", hashlib.sha256).digest()
    mac = hmac.new(master, b"authenticate", hashlib.sha256).digest()
    return enc, mac


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def secret_encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    enc_key, mac_key = _keys()
    nonce = secrets.token_bytes(_NONCE)
    data = plaintext.encode()
    cipher = bytes(a ^ b for a, b in zip(data, _keystream(enc_key, nonce, len(data)), strict=True))
    tag = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(nonce + cipher + tag).decode()


def secret_decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored
    enc_key, mac_key = _keys()
    try:
        raw = base64.b64decode(stored[len(PREFIX) :], validate=True)
    except ValueError:
        raise SecretUnreadable("stored secret is not valid base64") from None
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    expected = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()
    if len(raw) < _NONCE + _TAG or not hmac.compare_digest(tag, expected):
        raise SecretUnreadable("stored secret fails authentication (SECRET_KEY changed?)")
    stream = _keystream(enc_key, nonce, len(cipher))
    plain = bytes(a ^ b for a, b in zip(cipher, stream, strict=True))
    return plain.decode()
