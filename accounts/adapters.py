"""All django-allauth customisation lives here.

- Sign-up creates the organisation named in the form (Free plan), owned by the new user,
  in the same transaction as the user (``accounts.forms.SignupForm`` adds the field).
- Invitations: a visitor who opened a valid invitation link has it remembered in the
  session (``accounts.forms.PENDING_INVITATION_SESSION_KEY``). Signing up with the invited
  address counts as a verified address (the link reached that mailbox), and after log-in
  or sign-up the user is sent back to the invitation to join.
- Email verification is otherwise mandatory (``ACCOUNT_EMAIL_VERIFICATION``).
- Login rate limiting is allauth's own (``ACCOUNT_RATE_LIMITS``); this adapter does not
  weaken it.
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from django.db import transaction
from django.forms import BaseForm
from django.http import HttpRequest
from django.urls import reverse

from accounts.forms import PENDING_INVITATION_SESSION_KEY, pending_invitation
from accounts.models import User
from accounts.services import organization_create


class AccountAdapter(DefaultAccountAdapter):
    def save_user(
        self, request: HttpRequest, user: User, form: BaseForm, commit: bool = True
    ) -> User:
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            name = (form.cleaned_data.get("organization_name") or "").strip()
            if commit and name:
                organization_create(owner=user, name=name)
        return user

    def is_email_verified(self, request: HttpRequest, email: str) -> bool:
        invitation = pending_invitation(request)
        if invitation is not None and invitation.email.lower() == email.lower():
            return True
        return super().is_email_verified(request, email)

    def _invitation_redirect(self, request: HttpRequest) -> str | None:
        token = request.session.get(PENDING_INVITATION_SESSION_KEY)
        if token and pending_invitation(request) is not None:
            return reverse("invitation_accept", kwargs={"token": token})
        request.session.pop(PENDING_INVITATION_SESSION_KEY, None)
        return None

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        return self._invitation_redirect(request) or super().get_login_redirect_url(request)

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return self._invitation_redirect(request) or super().get_signup_redirect_url(request)

    def get_email_verification_redirect_url(self, email_address: EmailAddress) -> str:
        if self.request.user.is_authenticated:
            redirect = self._invitation_redirect(self.request)
            if redirect:
                return redirect
        return super().get_email_verification_redirect_url(email_address)
