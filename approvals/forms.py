from __future__ import annotations

from django import forms

from approvals.models import ApprovalRequest
from approvals.selectors import ApprovalFilters
from approvals.services import MAX_NOTES


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    notes = forms.CharField(
        required=False,
        max_length=MAX_NOTES,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Notes (optional)"}),
    )


class NotesForm(forms.Form):
    """The admin's intermediate page for approve/deny actions."""

    notes = forms.CharField(
        required=False, max_length=MAX_NOTES, widget=forms.Textarea(attrs={"rows": 3})
    )


class EmailLinkForm(forms.Form):
    """The confirmation page of an email link: the choice is in its URL."""

    notes = forms.CharField(
        required=False,
        max_length=MAX_NOTES,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Notes (optional)"}),
    )


class HistoryFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *ApprovalRequest.Status.choices]
    )
    agent = forms.CharField(required=False, max_length=120)
    environment = forms.ChoiceField(
        required=False, choices=[("", "Any environment"), ("test", "Test"), ("live", "Live")]
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def filters(self) -> ApprovalFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return ApprovalFilters(
            status=data.get("status") or "",
            agent=(data.get("agent") or "").strip(),
            environment=data.get("environment") or "",
            since=data.get("since"),
            until=data.get("until"),
        )
