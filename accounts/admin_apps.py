"""The Django admin's app config: the admin runs on ``accounts.admin_site.WardenAdminSite``.

A module of its own (not ``accounts/apps.py``, where a second config would confuse Django's
choice of the accounts app's config), importing nothing but the config class, since
INSTALLED_APPS loads it before the models.
"""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class WardenAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.WardenAdminSite"
