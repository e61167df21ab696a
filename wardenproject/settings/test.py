"""Test settings: base settings plus fast hashing and an in-memory mailbox."""

from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "true")

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
WARDEN_WEBHOOKS_ALLOW_PRIVATE = True
WARDEN_WEBHOOKS_ALLOW_HTTP = True
# A fixed audit signing key (base64 of bytes 0..31), so tests never write a development key.
if not WARDEN_AUDIT_SIGNING_KEYS:  # noqa: F405
    WARDEN_AUDIT_SIGNING_KEYS = ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ACCOUNT_RATE_LIMITS = {**ACCOUNT_RATE_LIMITS, "signup": False}  # noqa: F405

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not :memory:. With an in-memory database Django's live server shares ONE
    # connection between its request threads, and two concurrent requests (an SDK polling
    # while a reviewer approves) collide with "table is locked". A file gives each thread
    # its own connection, and SQLite's busy timeout makes writers wait their turn.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-warden.sqlite3")}  # noqa: F405
