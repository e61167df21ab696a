"""The retired ``enc1:`` scheme for endpoint secrets, kept only to convert old rows.

Before Fernet (``webhooks/crypto.py``), secrets were stored as
``enc1:<base64(nonce | ciphertext | tag)>``: keystream HMAC-SHA256(enc_key, nonce | counter),
tag HMAC-SHA256(mac_key, nonce | ciphertext), both keys derived from SECRET_KEY. Nothing
reads secrets for signing through this module: migration ``0005_endpoint_secrets_fernet``
and ``manage.py warden_webhook reencrypt`` decrypt with it to re-encrypt with Fernet, and
the migration's reverse encrypts with it so that rolled-back code reads its rows again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

PREFIX = "enc1:"
_NONCE = 16
_TAG = 32


class LegacyUnreadable(Exception):
    pass


def is_legacy(stored: str) -> bool:
    return stored.startswith(PREFIX)


def _keys(secret_key: str | bytes) -> tuple[bytes, bytes]:
    if isinstance(secret_key, bytes):
        secret_key = secret_key.decode()
    master = hashlib.sha256(f"warden.webhooks.secrets|{secret_key}".encode()).digest()
    enc = hmac.new(master, b"encrypt", hashlib.sha256).digest()
    mac = hmac.new(master, b"authenticate", hashlib.sha256).digest()
    return enc, mac


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def legacy_decrypt(stored: str, *, keys: Iterable[str | bytes]) -> str:
    """The plaintext of an ``enc1:`` value, trying each secret key in turn."""
    try:
        raw = base64.b64decode(stored[len(PREFIX) :], validate=True)
    except ValueError:
        raise LegacyUnreadable("stored enc1 secret is not valid base64") from None
    if len(raw) < _NONCE + _TAG:
        raise LegacyUnreadable("stored enc1 secret is too short")
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    for secret_key in keys:
        enc_key, mac_key = _keys(secret_key)
        expected = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()
        if hmac.compare_digest(tag, expected):
            stream = _keystream(enc_key, nonce, len(cipher))
            return bytes(a ^ b for a, b in zip(cipher, stream, strict=True)).decode()
    raise LegacyUnreadable(
        "stored enc1 secret cannot be read with SECRET_KEY or SECRET_KEY_FALLBACKS"
    )


def legacy_encrypt(plaintext: str, *, secret_key: str | bytes) -> str:
    """For the reverse of migration 0004 only."""
    if not plaintext:
        return ""
    enc_key, mac_key = _keys(secret_key)
    nonce = secrets.token_bytes(_NONCE)
    data = plaintext.encode()
    stream = _keystream(enc_key, nonce, len(data))
    cipher = bytes(a ^ b for a, b in zip(data, stream, strict=True))
    tag = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(nonce + cipher + tag).decode()
