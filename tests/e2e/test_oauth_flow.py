"""An app connected over OAuth in Chromium: the creator, logged in, opens the app's authorize
link, reads on the consent page which app reaches which account, connects it, and the app's
callback receives the code it exchanges (with its PKCE verifier) for a token that reads the
account on /v4/."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse

from django.test import Client
from playwright.sync_api import Page, expect

from api.oauth import oauth_application_create
from tests.api.test_oauth import REDIRECT, bearer, pkce_pair
from tests.e2e.steps import session_share


def test_a_creator_connects_an_app_on_the_consent_page(
    live_server, page: Page, alice_client, account_a
):
    page.set_default_timeout(15_000)
    app, secret = oauth_application_create(name="Shopify Sync", redirect_uris=[REDIRECT])
    verifier, challenge = pkce_pair()
    callbacks: list[str] = []

    def callback(route):
        callbacks.append(route.request.url)
        route.fulfill(status=200, body="connected")

    page.route(f"{REDIRECT}**", callback)
    session_share(page, live_server.url, alice_client)
    query = urlencode(
        {
            "client_id": app.client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "state": "DEF456",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    page.goto(f"{live_server.url}/v4/oauth/authorize?{query}")
    expect(page.get_by_role("heading", name="Connect Shopify Sync?")).to_be_visible()
    expect(page.get_by_text("asks to reach the account Ann's Kitchen")).to_be_visible()
    page.screenshot(path="/tmp/oauth_consent.png", full_page=True)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_text("connected")).to_be_visible()

    code = parse_qs(urlparse(callbacks[0]).query)["code"][0]
    response = Client().post(
        "/oauth/token",
        {
            "client_id": app.client_id,
            "client_secret": secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
    )
    token = response.json()["access_token"]
    account = Client().get("/v4/account", headers=bearer(token)).json()["account"]
    assert account["id"] == account_a.id
