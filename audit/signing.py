"""Ed25519 keys of the audit checkpoints: parsing, signing, verifying. No Django models here,
so ``warden_audit verify-export`` checks an export without the database.

Keys are written as base64 of their 32 raw bytes (a private key's seed, or a public key);
PEM is accepted too. A key's id is the first 16 hex digits of SHA-256 of its public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class BadKey(ValueError):
    """A key that cannot be read."""


def _raw(text: str) -> bytes | None:
    text = text.strip()
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return None


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except ValueError as exc:
            raise BadKey(f"not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise BadKey("the PEM key is not an Ed25519 key")
        return key
    raw = _raw(text)
    if raw is None:
        raise BadKey("an Ed25519 private key is base64 of 32 bytes (or PEM)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A public key as base64 of 32 bytes or PEM, or the path of a file holding one."""
    text = text.strip()
    if "-----BEGIN" not in text and _raw(text) is None and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise BadKey(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BadKey("the PEM key is not an Ed25519 key")
        return key
    raw = _raw(text)
    if raw is None:
        raise BadKey("an Ed25519 public key is base64 of 32 bytes, PEM, or a file of either")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def private_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def canonical_json(value: Any) -> bytes:
    """The one serialisation that is hashed or signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def checkpoint_message(*, org: str, kind: str, seq: int, chain_hash: str, created_at: str) -> bytes:
    """What a checkpoint's signature covers."""
    return canonical_json(
        {
            "type": "warden.audit.checkpoint",
            "v": 1,
            "org": org,
            "kind": kind,
            "seq": seq,
            "hash": chain_hash,
            "at": created_at,
        }
    )


def export_message(digest: str) -> bytes:
    """What an export's closing signature covers: the SHA-256 of every line before it."""
    return canonical_json({"type": "warden.audit.export", "v": 1, "sha256": digest})


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def verify(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def main() -> None:
    """``python -m audit.signing``: print a new private key and its public key (no Django
    settings needed, so a key can be made before the first start)."""
    key = new_private_key()
    public = key.public_key()
    print(f"WARDEN_AUDIT_SIGNING_KEYS={private_key_text(key)}")
    print(f"# public key (give it to auditors): {public_key_text(public)}")
    print(f"# key id: {key_id(public)}")


if __name__ == "__main__":
    main()
