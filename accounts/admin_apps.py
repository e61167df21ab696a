"""App configs for the Django admin: the admin runs on ``accounts.admin_site.WardenAdminSite``,
and allauth's email addresses get a section name of their own ("Sign-in"), not a second
"Accounts" beside Warden's.

A module of its own (not ``accounts/apps.py``, where a second config would confuse Django's
choice of the accounts app's config), importing nothing but the config class, since
INSTALLED_APPS loads it before the models.
"""

from __future__ import annotations

from allauth.account.apps import AccountConfig
from django.contrib.admin.apps import AdminConfig


class WardenAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.WardenAdminSite"


class SignInConfig(AccountConfig):
    verbose_name = "Sign-in"
