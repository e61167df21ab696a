"""Settings of the workers the mail-queue tests start: real SMTP to TEST_SMTP_PORT, which
never answers, and a timeout far longer than any test, so a mail task stays stuck."""

from __future__ import annotations

import os

from tests.webhooks.worker_settings import *  # noqa: F403

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ["TEST_SMTP_PORT"])
EMAIL_USE_TLS = False
EMAIL_TIMEOUT = 3600
