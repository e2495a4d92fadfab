"""The API documentation page is self-hosted: no asset from another host, no tracker.

The browser tests (tests/browser) watch the network of a real Chromium on the same page; these
check the page and its assets in process.
"""

from __future__ import annotations

import re

import pytest

from serving.ui.assets import CONTENT_SECURITY_POLICY
from serving.ui.docs import API_DESCRIPTION

ASSET = re.compile(r"""(?:src|href)="([^"]+)\"""")


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_the_docs_page_loads_only_the_services_own_files(api, path):
    page = api.client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "googletagmanager" not in page.text
    assets = ASSET.findall(page.text)
    assert len(assets) >= 3, page.text
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        answer = api.client.get(asset)  # no key: the files are public
        assert answer.status_code == 200, asset
        assert b"googletagmanager" not in answer.content, asset


def test_the_second_swagger_page_and_its_partial_document_are_gone(api):
    for path in ("/openapi.json", "/redoc"):
        answer = api.client.get(path, headers=api.headers())
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "not_found"


def test_the_one_openapi_document_still_documents_every_route(api):
    document = api.client.get("/docs.json").json()
    for path in ("/predict", "/predict_batch", "/history", "/stats", "/employees/at-risk"):
        assert path in document["paths"], path


def test_the_openapi_description_is_the_services_own_and_names_no_other_host(api):
    """BentoML's default description shows badge images from three other hosts; the docs
    page renders it (serving.bentoml_compat.describe_service)."""
    description = api.client.get("/docs.json").json()["info"]["description"]
    assert description == API_DESCRIPTION
    assert "://" not in description
