from __future__ import annotations

import pytest

from webhooks.crypto import SecretUnreadable, secret_decrypt, secret_encrypt


def test_encrypted_secret_round_trips_and_does_not_contain_the_plaintext():
    stored = secret_encrypt("whsec_c2VjcmV0")
    assert "whsec_" not in stored
    assert secret_decrypt(stored) == "whsec_c2VjcmV0"


def test_tampered_ciphertext_is_refused():
    stored = secret_encrypt("whsk_abcdef")
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(SecretUnreadable):
        secret_decrypt(tampered)


def test_a_different_secret_key_cannot_read_the_secret(settings):
    stored = secret_encrypt("whsk_abcdef")
    settings.SECRET_KEY = "another-key"
    with pytest.raises(SecretUnreadable):
        secret_decrypt(stored)
