from __future__ import annotations

from typing import Any

from django import forms

from approvals.models import ApprovalRequest
from approvals.selectors import ApprovalFilters, QueueFilters
from approvals.services import MAX_BULK, MAX_NOTES


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


class QueueFilterForm(forms.Form):
    """The queue's filters, read from the query string (so a filtered queue is a bookmark).

    ``agents`` are (public id, name) pairs of the organisation: an agent of another
    organisation is not a choice, so it can never narrow the queue to someone else's.
    """

    agent = forms.ChoiceField(required=False)
    action = forms.CharField(required=False, max_length=200)
    environment = forms.ChoiceField(
        required=False, choices=[("", "Any environment"), ("test", "Test"), ("live", "Live")]
    )
    amount_min = forms.DecimalField(
        required=False, label="Amount from", max_digits=30, decimal_places=10
    )
    amount_max = forms.DecimalField(required=False, label="to", max_digits=30, decimal_places=10)
    order = forms.ChoiceField(
        required=False,
        choices=[("oldest", "Oldest first"), ("newest", "Newest first")],
    )

    def __init__(self, *args: object, agents: list[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "Any agent"), *agents]
        self.fields["action"].widget.attrs.update({"list": "queue-actions"})
        for name in ("amount_min", "amount_max"):
            self.fields[name].widget.attrs.update({"inputmode": "decimal", "step": "any"})

    def clean(self) -> dict:
        data = super().clean()
        low, high = data.get("amount_min"), data.get("amount_max")
        if low is not None and high is not None and low > high:
            self.add_error("amount_max", "The upper amount is below the lower one.")
        return data

    def filters(self) -> QueueFilters:
        data = self.cleaned_data
        return QueueFilters(
            agent=data.get("agent") or "",
            action=(data.get("action") or "").strip(),
            environment=data.get("environment") or "",
            amount_min=data.get("amount_min"),
            amount_max=data.get("amount_max"),
            newest_first=data.get("order") == "newest",
        )


class ActionIdsField(forms.MultipleChoiceField):
    """Any action id (the service decides only the organisation's own), bounded in length."""

    def valid_value(self, value: str) -> bool:
        return 0 < len(value) <= 32


class BulkDecisionForm(forms.Form):
    action_ids = ActionIdsField(
        required=True, error_messages={"required": "Select at least one request."}
    )
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    notes = forms.CharField(required=False, max_length=MAX_NOTES)

    def clean_action_ids(self) -> list[str]:
        ids = self.cleaned_data["action_ids"]
        if len(ids) > MAX_BULK:
            raise forms.ValidationError(f"Decide at most {MAX_BULK} requests at once.")
        return ids
