"""An API key for account A (alice's) and for account B (charlie's), and a client that sends
one the way Kit's client libraries do."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from api.keys import api_key_create


class ApiClient:
    """Calls /v4/ with X-Kit-Api-Key, CSRF checks on (as for any client without a session)."""

    def __init__(self, key: str | None):
        self.key = key
        self.client = Client(enforce_csrf_checks=True)

    def call(self, method: str, path: str, body=None, *, raw: str | None = None, **params):
        headers = {"X-Kit-Api-Key": self.key} if self.key is not None else {}
        if method == "get":
            return self.client.get(path, params, headers=headers)
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return getattr(self.client, method)(
            path, data, content_type="application/json", headers=headers
        )

    def get(self, path, **params):
        return self.call("get", path, **params)

    def post(self, path, body=None, **kwargs):
        return self.call("post", path, body, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.call("put", path, body, **kwargs)

    def delete(self, path, body=None, **kwargs):
        return self.call("delete", path, body, **kwargs)


@pytest.fixture
def api_a(alice, account_a):
    _key, secret = api_key_create(account=account_a, name="Shop", created_by=alice)
    return ApiClient(secret)


@pytest.fixture
def api_b(charlie, account_b):
    _key, secret = api_key_create(account=account_b, name="Garage", created_by=charlie)
    return ApiClient(secret)
