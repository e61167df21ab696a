from __future__ import annotations

from typing import Any

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


class GrantForm(forms.Form):
    """ "Remember this approval" on the detail page: sent with Approve, checked by the
    decision service (approvals/grants.py) like the API's ``grant``."""

    grant_kind = forms.ChoiceField(
        required=False,
        label="Remember this approval",
        choices=[
            ("", "No, ask again next time"),
            ("identical", "Identical calls (same arguments)"),
            ("session", "This action for the rest of the session"),
            ("amount", "This action up to an amount"),
        ],
    )
    grant_ttl = forms.CharField(
        required=False, max_length=12, initial="1h", label="For (e.g. 30m, 8h, 1d; at most 30d)"
    )
    grant_max_amount = forms.CharField(required=False, max_length=40, label="Up to amount")
    grant_uses = forms.CharField(required=False, max_length=6, label="Uses")

    def __init__(self, *args: Any, kinds: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["grant_kind"]
        field.choices = [(k, v) for k, v in field.choices if not k or k in kinds]

    def grant(self) -> dict[str, Any] | None:
        """The grant as the decision service reads it (None: do not remember)."""
        data = self.cleaned_data
        kind = data.get("grant_kind")
        if not kind:
            return None
        grant: dict[str, Any] = {"kind": kind, "ttl": (data.get("grant_ttl") or "").strip()}
        if kind == "amount":
            grant["max_amount"] = (data.get("grant_max_amount") or "").strip()
            uses = (data.get("grant_uses") or "").strip()
            grant["uses"] = int(uses) if uses.isdigit() else uses
        return grant


class NotesForm(forms.Form):
    """The admin's intermediate page for approve/deny actions."""

    notes = forms.CharField(
        required=False, max_length=MAX_NOTES, widget=forms.Textarea(attrs={"rows": 3})
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
