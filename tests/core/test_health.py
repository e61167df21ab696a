from __future__ import annotations

from http import HTTPStatus

import pytest


def test_healthz_answers_ok_without_touching_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_database_and_broker_are_reachable(client):
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.OK, response.json()
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_reports_a_stopped_redis_broker_with_503(client, settings):
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = response.json()
    assert body["checks"] == {"database": "ok", "broker": "down"}
    assert "broker" in body["errors"]


@pytest.mark.django_db
def test_readyz_reports_a_missing_filesystem_broker_folder_with_503(client, settings, tmp_path):
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "gone")}
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["checks"]["broker"] == "down"
