"""Votes cast with an approver key now carry the key's creator as ``user`` (a person has one
vote whatever the credential). Fill it in on earlier key votes, except where that person
already has a vote on the request (the database allows one per person)."""

from django.db import migrations
from django.db.models import Exists, OuterRef


def votes_count_as_their_creator(apps, schema_editor):
    ApprovalVote = apps.get_model("approvals", "ApprovalVote")
    other_vote_of_creator = ApprovalVote.objects.filter(
        request_id=OuterRef("request_id"), user_id=OuterRef("api_key__created_by_id")
    )
    votes = ApprovalVote.objects.filter(
        user__isnull=True, api_key__isnull=False, api_key__created_by__isnull=False
    ).exclude(Exists(other_vote_of_creator))
    for vote in votes.select_related("api_key").iterator():
        # One at a time: two key votes of one creator on one request keep the first only.
        if not ApprovalVote.objects.filter(
            request_id=vote.request_id, user_id=vote.api_key.created_by_id
        ).exists():
            vote.user_id = vote.api_key.created_by_id
            vote.save(update_fields=["user"])


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_notified_at"),
        ("agents", "0002_seed_model_prices"),
    ]

    operations = [migrations.RunPython(votes_count_as_their_creator, migrations.RunPython.noop)]
