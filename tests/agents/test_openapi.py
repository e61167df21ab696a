from __future__ import annotations

from http import HTTPStatus

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_the_schema_describes_the_check_endpoint(client):
    response = client.get("/api/schema/")
    assert response.status_code == HTTPStatus.OK
    schema = yaml.safe_load(response.content)
    assert "/api/v1/check" in schema["paths"]
    assert "/api/v1/agents/{agent_id}/policy" in schema["paths"]


def test_the_docs_page_loads_from_local_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == HTTPStatus.OK
    assert b"cdn." not in response.content
    assert b"/static/drf_spectacular_sidecar/" in response.content
