from __future__ import annotations

import json
from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Membership, Organization, User

pytestmark = pytest.mark.django_db


def bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("warden_bootstrap", *args, stdout=out)
    return out.getvalue()


def bootstrap_json(*args: str) -> dict:
    return json.loads(bootstrap(*args, "--json"))


def test_bootstrap_prints_a_single_json_object_of_the_documented_shape():
    result = bootstrap_json("--org", "Demo", "--email", "demo@example.com", "--password", "pw")
    org = Organization.objects.get(name="Demo")
    assert result == {
        "org": {"id": org.public_id, "name": "Demo", "plan": "free"},
        "user": {"email": "demo@example.com", "password": "pw"},
    }


def test_bootstrap_creates_a_verified_owner_who_can_log_in_at_once(client):
    bootstrap_json("--org", "Demo", "--email", "Demo@Example.com", "--password", "pw-123-xyz")
    user = User.objects.get(email="demo@example.com")
    assert Membership.objects.get(user=user).role == "owner"
    assert EmailAddress.objects.get(user=user).verified
    response = client.post(
        "/accounts/login/", {"login": "demo@example.com", "password": "pw-123-xyz"}
    )
    assert client.session["_auth_user_id"] == str(user.pk)
    assert response["Location"] == "/"


def test_bootstrap_twice_reuses_the_user_organisation_and_membership():
    first = bootstrap_json("--org", "Demo", "--email", "demo@example.com")
    second = bootstrap_json("--org", "Demo", "--email", "demo@example.com")
    assert first["org"]["id"] == second["org"]["id"]
    assert User.objects.count() == 1
    assert Organization.objects.count() == 1
    assert Membership.objects.count() == 1
    assert EmailAddress.objects.count() == 1


def test_bootstrap_generates_a_password_only_when_it_creates_the_user():
    first = bootstrap_json("--org", "Demo", "--email", "demo@example.com")
    second = bootstrap_json("--org", "Demo", "--email", "demo@example.com")
    assert first["user"]["password"]
    assert User.objects.get().check_password(first["user"]["password"])
    assert second["user"]["password"] is None


def test_bootstrap_sets_the_password_on_a_later_run():
    bootstrap_json("--org", "Demo", "--email", "demo@example.com")
    bootstrap_json("--org", "Demo", "--email", "demo@example.com", "--password", "new-one")
    assert User.objects.get().check_password("new-one")


def test_bootstrap_sets_the_plan_on_a_later_run():
    bootstrap_json("--org", "Demo", "--email", "demo@example.com")
    result = bootstrap_json("--org", "Demo", "--email", "demo@example.com", "--plan", "business")
    assert result["org"]["plan"] == "business"
    assert Organization.objects.get().plan.slug == "business"


def test_bootstrap_says_what_it_made_in_plain_text():
    out = bootstrap("--org", "Demo", "--email", "demo@example.com", "--plan", "pro")
    assert "Created user demo@example.com" in out
    assert "Created organisation Demo" in out
    out = bootstrap("--org", "Demo", "--email", "demo@example.com")
    assert "Reused user" in out
    assert "Reused organisation" in out


def test_bootstrap_refuses_an_unknown_plan():
    with pytest.raises(CommandError):
        bootstrap("--org", "Demo", "--email", "demo@example.com", "--plan", "gold")
