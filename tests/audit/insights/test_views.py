"""The overview on the dashboard, its live panel and the token usage page: every member sees
their own organisation's figures, nobody sees another's, and a bad filter is a 400 naming it."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import reverse

from agents.models import ModelPrice
from audit.insights.rollup import overview_rollup
from tests.audit.insights.conftest import checks, usage

pytestmark = pytest.mark.django_db

PAGES = ["/", "/insights/overview/panel/", "/insights/tokens/"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_data(support_bot, org_a):
    checks(support_bot, 7, action="stripe.refund", decision="requires_approval")
    usage(support_bot, "acme-secret-model", "0.10", session_id="alice-session")
    overview_rollup()


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("persona", ["alice", "bob", "vera"])
def test_every_member_of_the_organisation_may_see_the_overview_pages(
    request, org_a, alice_data, path, persona
):
    response = client_for(request.getfixturevalue(persona)).get(path)

    assert response.status_code == HTTPStatus.OK


def test_the_dashboard_shows_the_overview_with_chart_data_for_the_scripts(alice, alice_data):
    html = client_for(alice).get("/").content.decode()

    assert 'data-chart="checks"' in html and 'data-chart="tokens"' in html
    assert '<script id="overview-data" type="application/json">' in html
    assert "stripe.refund" in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert reverse("insights:overview-panel") in html  # polled by htmx


@pytest.mark.parametrize("path", PAGES)
def test_an_outsider_sees_only_their_own_organisation(charlie, org_c, alice_data, path):
    html = client_for(charlie).get(path).content.decode()

    assert "stripe.refund" not in html
    assert "acme-secret-model" not in html
    assert "support-bot" not in html


@pytest.mark.parametrize("path", PAGES)
def test_an_outsider_naming_another_organisations_agent_gets_404(charlie, org_c, support_bot, path):
    response = client_for(charlie).get(path, {"agent": support_bot.public_id})

    assert response.status_code == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", HTTPStatus.OK),  # the "create or join an organisation" page
        ("/insights/overview/panel/", HTTPStatus.NOT_FOUND),
        ("/insights/tokens/", HTTPStatus.NOT_FOUND),
    ],
)
def test_a_user_without_an_organisation_gets_no_figures(path, status, db):
    from tests.factories import UserFactory

    response = client_for(UserFactory(email="nobody@example.com")).get(path)

    assert response.status_code == status
    assert b"overview-data" not in response.content


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    ("params", "named"),
    [({"period": "1y"}, b"period must be"), ({"environment": "prod"}, b"environment must be")],
)
def test_a_bad_filter_is_a_400_naming_the_field(alice, org_a, path, params, named):
    response = client_for(alice).get(path, params)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert named in response.content


def test_the_pages_need_a_login(client, db):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == HTTPStatus.FOUND
        assert "/accounts/login/" in response["Location"]


def test_the_token_usage_page_flags_a_model_without_a_price(alice, alice_data):
    assert not ModelPrice.objects.filter(model="acme-secret-model").exists()

    html = client_for(alice).get("/insights/tokens/").content.decode()

    assert "No price for model <code>acme-secret-model</code>" in html
    assert "no price for model acme-secret-model" in html
    assert "alice-session" in html


def test_the_agent_filter_narrows_the_panel_to_one_agent(alice, alice_data, billing_bot):
    response = client_for(alice).get(
        "/insights/overview/panel/", {"agent": billing_bot.public_id, "period": "7d"}
    )

    assert response.status_code == HTTPStatus.OK
    assert b"No checks in this period." in response.content
