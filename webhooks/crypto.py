"""Encryption at rest for endpoint signing secrets: Fernet, keyed from SECRET_KEY.

Signing secrets must be usable, so they cannot be hashed. They are stored as
``fernet:<token>``, a Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

Key derivation: each Django secret key (``SECRET_KEY``, then every ``SECRET_KEY_FALLBACKS``
entry) gives one Fernet key, HKDF-SHA256 (RFC 5869) over the UTF-8 bytes of that secret key
with no salt, info ``b"warden.webhooks.endpoint-secret.fernet"`` and 32 bytes of output,
url-safe base64 encoded (Fernet's key format). A ``MultiFernet`` over those keys encrypts
with ``SECRET_KEY`` and decrypts with any of them, so rotating ``SECRET_KEY`` (old value
moved to ``SECRET_KEY_FALLBACKS``) keeps every stored secret readable;
``manage.py warden_webhook reencrypt`` then rewrites them under the new key
(``MultiFernet.rotate``) and the old key can leave the fallbacks.

Values in the retired ``enc1:`` scheme, or stored in clear before encryption, are not read
here: migration ``0005_endpoint_secrets_fernet`` and ``reencrypt`` convert them
(``webhooks/crypto_legacy.py``).
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.utils.encoding import force_bytes

from webhooks import crypto_legacy

PREFIX = "fernet:"
HKDF_INFO = b"warden.webhooks.endpoint-secret.fernet"


class SecretUnreadable(Exception):
    pass


def fernet_key(secret_key: str | bytes) -> bytes:
    """The Fernet key that one Django secret key gives (see the module docstring)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        force_bytes(secret_key)
    )
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=8)
def _multifernet(secret_keys: tuple[str | bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(fernet_key(key)) for key in secret_keys])


def _secret_keys() -> tuple[str | bytes, ...]:
    return (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)


def secret_encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return PREFIX + _multifernet(_secret_keys()).encrypt(plaintext.encode()).decode()


def secret_decrypt(stored: str) -> str:
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        legacy = crypto_legacy.is_legacy(stored)
        kind = "uses the retired enc1 scheme" if legacy else "is not encrypted"
        raise SecretUnreadable(f"stored secret {kind}; run `manage.py warden_webhook reencrypt`")
    try:
        return _multifernet(_secret_keys()).decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "stored secret cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS"
        ) from None


def secret_reencrypt(stored: str) -> str:
    """``stored`` rewritten under the current SECRET_KEY; converts retired and clear values.

    Raises ``SecretUnreadable`` when neither SECRET_KEY nor a fallback can read it.
    """
    if not stored:
        return ""
    if stored.startswith(PREFIX):
        try:
            token = _multifernet(_secret_keys()).rotate(stored[len(PREFIX) :].encode())
        except InvalidToken:
            raise SecretUnreadable(
                "stored secret cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS"
            ) from None
        return PREFIX + token.decode()
    if crypto_legacy.is_legacy(stored):
        try:
            plaintext = crypto_legacy.legacy_decrypt(stored, keys=_secret_keys())
        except crypto_legacy.LegacyUnreadable as exc:
            raise SecretUnreadable(str(exc)) from None
        return secret_encrypt(plaintext)
    return secret_encrypt(stored)  # stored in clear before encryption at rest
