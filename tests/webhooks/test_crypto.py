"""Endpoint secrets at rest: Fernet under keys derived from SECRET_KEY and its fallbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from webhooks.crypto import SecretUnreadable, secret_decrypt, secret_encrypt, secret_reencrypt


def documented_fernet(secret_key: str) -> Fernet:
    """The key derivation as docs/ARCHITECTURE.md describes it, written out independently."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"warden.webhooks.endpoint-secret.fernet",
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


# The retired home-made scheme ("enc1:", HMAC-SHA256 in counter mode, encrypt-then-MAC),
# written out as the old code did it, to make rows as that code stored them.


def _old_keys(secret_key: str) -> tuple[bytes, bytes]:
    master = hashlib.sha256(f"warden.webhooks.secrets|{secret_key}".encode()).digest()
    return (
        hmac.new(master, b"encrypt", hashlib.sha256).digest(),
        hmac.new(master, b"authenticate", hashlib.sha256).digest(),
    )


def _old_stream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (
        hmac.new(key, nonce + n.to_bytes(8, "big"), hashlib.sha256).digest()
        for n in range((length + 31) // 32)
    )
    return b"".join(blocks)[:length]


def old_scheme_encrypt(plaintext: str, secret_key: str) -> str:
    enc_key, mac_key = _old_keys(secret_key)
    nonce = secrets.token_bytes(16)
    data = plaintext.encode()
    cipher = bytes(a ^ b for a, b in zip(data, _old_stream(enc_key, nonce, len(data)), strict=True))
    tag = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()
    return "enc1:" + base64.b64encode(nonce + cipher + tag).decode()


def old_scheme_decrypt(stored: str, secret_key: str) -> str:
    enc_key, mac_key = _old_keys(secret_key)
    raw = base64.b64decode(stored.removeprefix("enc1:"))
    nonce, cipher, tag = raw[:16], raw[16:-32], raw[-32:]
    assert hmac.compare_digest(tag, hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest())
    stream = _old_stream(enc_key, nonce, len(cipher))
    return bytes(a ^ b for a, b in zip(cipher, stream, strict=True)).decode()


def test_encrypted_secret_round_trips_and_does_not_contain_the_plaintext():
    stored = secret_encrypt("whsec_c2VjcmV0")
    assert "whsec_" not in stored
    assert secret_decrypt(stored) == "whsec_c2VjcmV0"


def test_the_stored_value_is_a_fernet_token_under_the_documented_key(settings):
    stored = secret_encrypt("whsk_abcdef")
    prefix, token = stored.split(":", 1)
    assert prefix == "fernet"
    assert documented_fernet(settings.SECRET_KEY).decrypt(token.encode()) == b"whsk_abcdef"


def test_the_longest_secret_fits_the_column():
    from webhooks.models import Endpoint

    longest = "whsec_" + base64.b64encode(bytes(32)).decode()
    assert len(secret_encrypt(longest)) <= Endpoint._meta.get_field("secret").max_length


def test_tampered_ciphertext_is_refused():
    stored = secret_encrypt("whsk_abcdef")
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(SecretUnreadable):
        secret_decrypt(tampered)


def test_a_different_secret_key_cannot_read_the_secret(settings):
    stored = secret_encrypt("whsk_abcdef")
    settings.SECRET_KEY = "another-key"
    with pytest.raises(SecretUnreadable, match="SECRET_KEY_FALLBACKS"):
        secret_decrypt(stored)


def test_a_secret_stored_under_a_fallback_key_is_still_read(settings):
    settings.SECRET_KEY = "old-key"
    stored = secret_encrypt("whsk_abcdef")
    settings.SECRET_KEY = "new-key"
    settings.SECRET_KEY_FALLBACKS = ["older-key", "old-key"]
    assert secret_decrypt(stored) == "whsk_abcdef"


def test_reencrypting_moves_a_secret_to_the_current_key(settings):
    settings.SECRET_KEY = "old-key"
    stored = secret_encrypt("whsk_abcdef")
    settings.SECRET_KEY = "new-key"
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    moved = secret_reencrypt(stored)
    settings.SECRET_KEY_FALLBACKS = []
    assert secret_decrypt(moved) == "whsk_abcdef"
    with pytest.raises(SecretUnreadable):
        secret_decrypt(stored)


def test_a_value_in_the_retired_scheme_is_not_read_but_is_converted(settings):
    settings.SECRET_KEY = "old-key"
    stored = old_scheme_encrypt("whsec_c2VjcmV0", "old-key")
    with pytest.raises(SecretUnreadable, match="reencrypt"):
        secret_decrypt(stored)
    settings.SECRET_KEY = "new-key"
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    converted = secret_reencrypt(stored)
    assert converted.startswith("fernet:")
    settings.SECRET_KEY_FALLBACKS = []
    assert secret_decrypt(converted) == "whsec_c2VjcmV0"


def test_a_plaintext_value_is_not_read_but_is_converted():
    with pytest.raises(SecretUnreadable, match="not encrypted"):
        secret_decrypt("whsk_plain")
    assert secret_decrypt(secret_reencrypt("whsk_plain")) == "whsk_plain"


def test_a_retired_scheme_value_under_an_unknown_key_cannot_be_converted(settings):
    stored = old_scheme_encrypt("whsk_abcdef", "lost-key")
    with pytest.raises(SecretUnreadable):
        secret_reencrypt(stored)


def test_an_empty_value_stays_empty():
    assert secret_encrypt("") == ""
    assert secret_decrypt("") == ""
    assert secret_reencrypt("") == ""
