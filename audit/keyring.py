"""The audit signing keys from settings: the one that signs, and all that verify."""

from __future__ import annotations

import logging
import os
from functools import cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from audit.signing import (
    new_private_key,
    private_key_from_text,
    private_key_text,
    public_key_from_text,
)

logger = logging.getLogger(__name__)


def _development_key() -> Ed25519PrivateKey:
    """DEBUG without a key: one made once and kept in WARDEN_VAR_DIR (readable by its owner
    only), so checkpoints of `make run` stay verifiable across restarts."""
    path = settings.VAR_DIR / "audit-signing.key"
    if path.exists():
        return private_key_from_text(path.read_text(encoding="utf-8"))
    key = new_private_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(private_key_text(key) + "\n")
    logger.warning("DEBUG: made a development audit signing key in %s", path)
    return key


@cache
def _private_keys() -> tuple[Ed25519PrivateKey, ...]:
    keys = tuple(private_key_from_text(text) for text in settings.WARDEN_AUDIT_SIGNING_KEYS)
    if not keys and settings.DEBUG:
        keys = (_development_key(),)
    return keys


def signing_key() -> Ed25519PrivateKey | None:
    """The key that signs checkpoints now (None: none configured, nothing is signed)."""
    keys = _private_keys()
    return keys[0] if keys else None


def verification_keys() -> list[Ed25519PublicKey]:
    """Every key a checkpoint of this server may be signed with, the signing key first."""
    keys = [key.public_key() for key in _private_keys()]
    keys += [public_key_from_text(text) for text in settings.WARDEN_AUDIT_PUBLIC_KEYS]
    return keys


def keyring_forget() -> None:
    """Read the settings again (tests that change the keys)."""
    _private_keys.cache_clear()
