from __future__ import annotations

from typing import Any

from allauth.account.forms import SignupForm as AllauthSignupForm
from allauth.core import context
from django import forms

from accounts.models import Membership
from accounts.services import (
    MAX_APPROVAL_TIMEOUT_SECONDS,
    MIN_APPROVAL_TIMEOUT_SECONDS,
    InvitationInvalid,
    available_time_zones,
    invitation_from_token,
)

# The invitation a visitor arrived with, kept while they sign up or log in.
PENDING_INVITATION_SESSION_KEY = "warden_pending_invitation"


def pending_invitation_token(request: Any) -> str | None:
    if request is None or not hasattr(request, "session"):
        return None
    return request.session.get(PENDING_INVITATION_SESSION_KEY)


def pending_invitation(request: Any):
    """The still-valid invitation remembered in the session, or ``None``."""
    token = pending_invitation_token(request)
    if not token:
        return None
    try:
        return invitation_from_token(token)
    except InvitationInvalid:
        return None


class SignupForm(AllauthSignupForm):
    """allauth's sign-up form plus the name of the organisation the new user will own.

    Someone who arrived through an invitation may leave the name empty: they join the
    inviting organisation instead of creating their own.
    """

    organization_name = forms.CharField(
        label="Organisation name",
        max_length=120,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Acme Inc.", "autocomplete": "organization"}),
    )

    field_order = ["organization_name", "email", "password1", "password2"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invitation = pending_invitation(context.request)
        if self.invitation is not None:
            self.fields["email"].initial = self.invitation.email
            joining = self.invitation.organization.name
            self.fields["organization_name"].help_text = f"Optional: you are joining {joining}."

        self.order_fields(self.field_order)

    def clean_organization_name(self) -> str:
        name = self.cleaned_data.get("organization_name", "").strip()
        if not name and self.invitation is None:
            raise forms.ValidationError("Name the organisation you are creating.")
        return name


class OrganizationSettingsForm(forms.Form):
    name = forms.CharField(label="Organisation name", max_length=120)
    default_approval_timeout_minutes = forms.IntegerField(
        label="Default approval timeout (minutes)",
        min_value=MIN_APPROVAL_TIMEOUT_SECONDS // 60,
        max_value=MAX_APPROVAL_TIMEOUT_SECONDS // 60,
        help_text="How long an approval request waits for a decision before it expires.",
    )
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Rules read $time.hour and $time.weekday in this time zone.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name) for name in sorted(available_time_zones())]


class ProfileForm(forms.Form):
    name = forms.CharField(label="Your name", max_length=150, required=False)
    notify_approvals = forms.BooleanField(
        label="Email me when an approval request needs my decision", required=False
    )


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices)

    def __init__(self, *args: Any, roles: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if roles is not None:
            self.fields["role"].choices = [
                (value, label) for value, label in Membership.Role.choices if value in roles
            ]
        self.fields["role"].initial = Membership.Role.VIEWER


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class VerificationResendForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
