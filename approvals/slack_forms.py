from __future__ import annotations

from django import forms


class SlackConnectForm(forms.Form):
    bot_token = forms.CharField(
        label="Bot token",
        required=False,
        max_length=300,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": "xoxb-..."}),
        help_text="OAuth & Permissions, Bot User OAuth Token. Never shown again; leave empty "
        "to keep the stored one.",
    )
    signing_secret = forms.CharField(
        label="Signing secret",
        required=False,
        max_length=200,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Basic Information, App Credentials. Never shown again; leave empty to keep "
        "the stored one.",
    )
    default_channel = forms.CharField(
        label="Default channel",
        max_length=100,
        help_text="Where held calls are posted unless the agent or the rule names another "
        "(#approvals or a channel id). Invite the app to it.",
    )


class SlackAgentChannelForm(forms.Form):
    slack_channel = forms.CharField(
        label="Slack channel",
        required=False,
        max_length=100,
        help_text="Empty: the organisation's default. A rule's approval.slack_channel wins.",
    )
