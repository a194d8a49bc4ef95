"""The API reference page (/api/reference/): every operation of the generated OpenAPI document,
grouped by resource, with its parameters, body fields, responses and an example call; public,
as Kit's reference is, and linked from the API keys page."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from api.reference import api_reference
from api.v4 import api

URL = "/api/reference/"


@pytest.fixture
def page(client, db):
    response = client.get(URL)
    assert response.status_code == 200
    return response.content.decode()


def _operations():
    schema = api.get_openapi_schema()
    return [(method, path) for path, methods in schema["paths"].items() for method in methods]


def test_every_operation_of_the_schema_is_on_the_page_under_its_own_anchor(page):
    operations = _operations()
    assert len(operations) > 20
    anchors = re.findall(r'<article class="card reference-operation" id="([^"]+)"', page)
    assert len(anchors) == len(operations) == len(set(anchors))
    for method, path in operations:
        anchor = method + "-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
        assert anchor in anchors, (method, path)
        article = page.split(f'id="{anchor}"', 1)[1].split("</article>", 1)[0]
        assert f'href="#{anchor}"' in article
        assert f"{method.upper()}</span>" in article
        assert f'<code class="reference-path">{path}</code>' in article


def test_operations_are_grouped_by_resource_with_a_table_of_contents(page):
    resources = api_reference()
    assert [r.name for r in resources][:3] == ["account", "subscribers", "tags"]
    for resource in resources:
        assert f'<a href="#{resource.anchor}">{resource.title}</a>' in page
        section = page.split(f'id="{resource.anchor}"', 1)[1].split("</section>", 1)[0]
        for operation in resource.operations:
            assert f'id="{operation.anchor}"' in section
            assert operation.path.startswith(f"/v4/{resource.name}")
    assert "Broadcasts" in page and "Custom fields" in page


def test_an_operation_shows_its_parameters_body_fields_and_a_curl_call_with_the_key(page):
    create = page.split('id="post-v4-subscribers"', 1)[1].split("</article>", 1)[0]
    for field in ("email_address", "first_name", "state", "fields"):
        assert f"<code>{field}</code>" in create
    assert '<td data-label="Required">yes</td>' in create
    curl = html.unescape(
        create.split('<pre class="reference-curl"><code>', 1)[1].split("</code>")[0]
    )
    assert curl.startswith('curl -X POST "http://testserver/v4/subscribers"')
    assert '-H "X-Kit-Api-Key: <your API key>"' in curl
    assert '"email_address": "ada@example.com"' in curl
    get = page.split('id="get-v4-subscribers-subscriber-id"', 1)[1].split("</article>", 1)[0]
    assert "<code>subscriber_id</code>" in get and '<td data-label="In">path</td>' in get
    assert '"http://testserver/v4/subscribers/123"' in get
    assert "-d '" not in get


def test_the_page_is_public_loads_nothing_from_elsewhere_and_is_linked_from_the_keys_page(
    alice_client, page
):
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', page)
    keys_page = alice_client.get(reverse("api_key_list")).content.decode()
    assert f'href="{URL}"' in keys_page


# GETs that answer one object, not a page of a list.
NOT_LISTS = {"/v4/account", "/v4/broadcasts/{broadcast_id}/stats"}


def test_every_list_declares_kits_paging_and_the_subscriber_lists_their_filters(page):
    schema = api.get_openapi_schema()
    lists = [
        path
        for path, methods in schema["paths"].items()
        if "get" in methods and not path.endswith("}") and path not in NOT_LISTS
    ]
    assert len(lists) >= 12
    for path in lists:
        names = {parameter["name"] for parameter in schema["paths"][path]["get"]["parameters"]}
        assert {"per_page", "after", "before", "include_total_count"} <= names, path
    article = page.split('id="get-v4-subscribers"', 1)[1].split("</article>", 1)[0]
    for name in ("per_page", "after", "status", "email_address", "created_after", "updated_before"):
        assert f"<code>{name}</code>" in article
    assert "at most 1000" in article
