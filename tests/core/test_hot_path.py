"""The key-only check endpoints skip the browser middleware but keep their behaviour."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from wardenproject.middleware import KEY_ONLY_HOT_PATHS

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", sorted(KEY_ONLY_HOT_PATHS))
def test_a_hot_path_without_a_key_answers_401_json_with_security_headers(client, path):
    response = client.post(path, data={}, content_type="application/json")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "unauthenticated"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert "sessionid" not in response.cookies
    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.parametrize("path", sorted(KEY_ONLY_HOT_PATHS))
def test_a_hot_path_with_a_bad_body_names_the_problem(client, path):
    response = client.post(
        path, data="not json", content_type="application/json", HTTP_X_API_KEY="wdn_live_nope"
    )
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_other_methods_on_a_hot_path_go_through_the_whole_stack(client):
    response = client.get("/api/v1/check")
    # The normal stack answers (DRF: unauthenticated before method), with its own headers.
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", sorted(KEY_ONLY_HOT_PATHS))
def test_a_hot_path_over_https_sends_hsts_when_configured(client, settings, path):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = client.post(path, data={}, content_type="application/json", secure=True)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"


def test_a_hot_path_over_plain_http_sends_no_hsts(client, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    response = client.post("/api/v1/check", data={}, content_type="application/json")
    assert "Strict-Transport-Security" not in response


@pytest.mark.parametrize("path", sorted(KEY_ONLY_HOT_PATHS))
def test_a_hot_path_over_plain_http_is_redirected_to_https_when_configured(client, settings, path):
    settings.SECURE_SSL_REDIRECT = True
    response = client.post(path, data={}, content_type="application/json")
    assert response.status_code == HTTPStatus.MOVED_PERMANENTLY
    assert response["Location"] == f"https://testserver{path}"


def test_a_hot_path_over_https_is_not_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.post("/api/v1/check", data={}, content_type="application/json", secure=True)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
