"""OAuth 2.0 for third-party apps (api.oauth): authorization code with PKCE on the consent page,
tokens on /v4/ as Authorization: Bearer, refresh, revocation, tenancy and the rate limit."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from oauth2_provider.models import AccessToken, Application, Grant

from api.models import OAuthTokenAccount
from api.oauth import oauth_application_create
from subscribers.models import Subscriber
from tests.factories import SubscriberFactory

REDIRECT = "https://shop.example.com/kit/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def app(db):
    application, secret = oauth_application_create(name="Shopify Sync", redirect_uris=[REDIRECT])
    application.plain_secret = secret
    return application


def authorize_params(app, challenge: str | None, **extra) -> dict:
    params = {
        "client_id": app.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": "DEF456",
        **extra,
    }
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return params


def consent(client: Client, app, challenge: str) -> str:
    """Opens the consent page, approves, and returns the code from the redirect."""
    params = authorize_params(app, challenge)
    page = client.get("/v4/oauth/authorize", params)
    assert page.status_code == 200
    account_id = page.context["request"].account.id
    form = {**params, "scope": "public", "account_id": account_id, "allow": "Authorize"}
    response = client.post("/v4/oauth/authorize", form)
    assert response.status_code == 302
    location = urlparse(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["DEF456"]
    return query["code"][0]


def token_call(app, **data):
    return Client(enforce_csrf_checks=True).post(
        "/v4/oauth/token", {"client_id": app.client_id, "client_secret": app.plain_secret, **data}
    )


def exchange(app, code: str, verifier: str):
    return token_call(
        app,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def tokens_for(client: Client, app) -> dict:
    verifier, challenge = pkce_pair()
    response = exchange(app, consent(client, app, challenge), verifier)
    assert response.status_code == 200, response.content
    return response.json()


def test_the_consent_page_shows_the_app_the_account_and_the_scopes(alice_client, app):
    _verifier, challenge = pkce_pair()
    page = alice_client.get("/v4/oauth/authorize", authorize_params(app, challenge))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Shopify Sync" in html
    assert "the account <strong>Ann&#x27;s Kitchen</strong>" in html
    assert "subscribers, tags, forms" in html


def test_the_consent_page_asks_a_visitor_to_log_in_first(app):
    _verifier, challenge = pkce_pair()
    response = Client().get("/v4/oauth/authorize", authorize_params(app, challenge))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_full_flow_from_consent_to_revocation(alice_client, app, account_a):
    tokens = tokens_for(alice_client, app)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "public"
    assert tokens["expires_in"] > 0
    assert abs(tokens["created_at"] - time.time()) < 60

    api = Client()
    response = api.get("/v4/account", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json()["account"]["id"] == account_a.id

    refreshed = token_call(app, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.content
    new = refreshed.json()
    assert new["access_token"] != tokens["access_token"]
    assert api.get("/v4/account", headers=bearer(tokens["access_token"])).status_code == 401
    response = api.get("/v4/account", headers=bearer(new["access_token"]))
    assert response.json()["account"]["id"] == account_a.id
    # The refresh token is rotated: the old one cannot be used again.
    again = token_call(app, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert again.status_code == 400

    revoked = Client().post(
        "/v4/oauth/revoke",
        {
            "token": new["access_token"],
            "client_id": app.client_id,
            "client_secret": app.plain_secret,
        },
    )
    assert revoked.status_code == 200
    response = api.get("/v4/account", headers=bearer(new["access_token"]))
    assert response.status_code == 401
    assert response.json() == {"errors": ["The access token is invalid"]}
    # Revoking the access token revokes its refresh token too.
    after = token_call(app, grant_type="refresh_token", refresh_token=new["refresh_token"])
    assert after.status_code == 400


def test_a_bearer_token_can_write_in_its_account(alice_client, app, account_a):
    tokens = tokens_for(alice_client, app)
    response = Client().post(
        "/v4/subscribers",
        {"email_address": "new@example.com"},
        content_type="application/json",
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 201
    assert Subscriber.objects.get(email="new@example.com").account == account_a


def test_the_token_reaches_the_account_chosen_at_consent(alice, account_a, app):
    from tests.factories import AccountFactory, MembershipFactory

    second = AccountFactory(name="Ann's Bakery")
    MembershipFactory(user=alice, account=second)
    client = Client()
    client.force_login(alice)
    client.post(f"/accounts/switch/{second.id}/")
    page = client.get("/v4/oauth/authorize", authorize_params(app, pkce_pair()[1]))
    assert "the account <strong>Ann&#x27;s Bakery</strong>" in page.content.decode()
    tokens = tokens_for(client, app)
    response = Client().get("/v4/account", headers=bearer(tokens["access_token"]))
    assert response.json()["account"]["id"] == second.id


def test_approving_after_switching_account_in_another_tab_is_refused(alice, account_a, app):
    from tests.factories import AccountFactory, MembershipFactory

    second = AccountFactory(name="Ann's Bakery")
    MembershipFactory(user=alice, account=second)
    client = Client()
    client.force_login(alice)
    params = authorize_params(app, pkce_pair()[1])
    # The page showed Ann's Kitchen; the creator then switched to the bakery elsewhere.
    client.post(f"/accounts/switch/{second.id}/")
    form = {**params, "scope": "public", "account_id": account_a.id, "allow": "Authorize"}
    response = client.post("/v4/oauth/authorize", form)
    query = parse_qs(urlparse(response["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert not Grant.objects.exists()


def test_a_token_stops_working_when_its_creator_leaves_the_account(alice_client, alice, app):
    from convertkit.models import Membership

    tokens = tokens_for(alice_client, app)
    Membership.objects.filter(user=alice).delete()
    response = Client().get("/v4/account", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401


def test_an_authorization_request_without_pkce_is_refused(alice_client, app):
    response = alice_client.get("/v4/oauth/authorize", authorize_params(app, None))
    assert response.status_code == 302
    query = parse_qs(urlparse(response["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert "code" not in query
    assert not Grant.objects.exists()


def test_a_code_exchanged_without_its_verifier_is_refused(alice_client, app):
    _verifier, challenge = pkce_pair()
    code = consent(alice_client, app, challenge)
    response = token_call(app, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not AccessToken.objects.exists()


def test_a_code_exchanged_with_a_wrong_verifier_is_refused(alice_client, app):
    _verifier, challenge = pkce_pair()
    code = consent(alice_client, app, challenge)
    other_verifier, _challenge = pkce_pair()
    response = exchange(app, code, other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_a_code_is_used_once(alice_client, app):
    verifier, challenge = pkce_pair()
    code = consent(alice_client, app, challenge)
    assert exchange(app, code, verifier).status_code == 200
    assert exchange(app, code, verifier).status_code == 400
    assert AccessToken.objects.count() == 1


def test_cancelling_on_the_consent_page_gives_no_code(alice_client, app, account_a):
    params = authorize_params(app, pkce_pair()[1])
    form = {**params, "scope": "public", "account_id": account_a.id}
    response = alice_client.post("/v4/oauth/authorize", form)
    query = parse_qs(urlparse(response["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert not Grant.objects.exists()


def test_a_token_of_account_a_gets_404_for_account_b_subscribers(alice_client, app, account_b):
    theirs = SubscriberFactory(account=account_b, email="theirs@example.com", first_name="Old")
    tokens = tokens_for(alice_client, app)
    headers = bearer(tokens["access_token"])
    api = Client()
    response = api.get(f"/v4/subscribers/{theirs.id}", headers=headers)
    assert response.status_code == 404
    assert response.json() == {"errors": ["Not Found"]}
    response = api.put(
        f"/v4/subscribers/{theirs.id}",
        {"email_address": "mine@example.com", "first_name": "New"},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert (theirs.email, theirs.first_name) == ("theirs@example.com", "Old")
    listed = api.get("/v4/subscribers", headers=headers).json()["subscribers"]
    assert listed == []


def test_an_expired_token_is_a_401_in_kits_words_for_a_refresh(alice_client, app):
    from datetime import timedelta

    from django.utils import timezone

    tokens = tokens_for(alice_client, app)
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = Client().get("/v4/account", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    # Kit's client libraries refresh the token on exactly this message.
    assert response.json() == {"errors": ["The access token expired"]}


def test_a_made_up_bearer_token_is_a_401(db):
    response = Client().get("/v4/account", headers=bearer("not-a-token"))
    assert response.status_code == 401
    assert response.json() == {"errors": ["The access token is invalid"]}


def test_the_rate_limit_counts_per_token(alice_client, app, settings):
    settings.API_OAUTH_RATE_LIMIT = (2, 60)
    first = tokens_for(alice_client, app)["access_token"]
    second = tokens_for(alice_client, app)["access_token"]
    api = Client()
    for _ in range(2):
        assert api.get("/v4/account", headers=bearer(first)).status_code == 200
    response = api.get("/v4/account", headers=bearer(first))
    assert response.status_code == 429
    assert response.json() == {"errors": ["Retry later"]}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert api.get("/v4/account", headers=bearer(second)).status_code == 200


def test_the_oauth_limit_is_apart_from_the_api_key_limit(alice_client, app, settings):
    settings.API_RATE_LIMIT = (1, 60)
    settings.API_OAUTH_RATE_LIMIT = (3, 60)
    token = tokens_for(alice_client, app)["access_token"]
    for _ in range(3):
        assert Client().get("/v4/account", headers=bearer(token)).status_code == 200


def test_every_token_is_tied_to_an_account(alice_client, app, account_a):
    tokens_for(alice_client, app)
    assert OAuthTokenAccount.objects.get().account == account_a


def test_the_command_registers_an_app_and_prints_its_secret_once(db):
    out = StringIO()
    call_command(
        "oauth_app_create",
        "--name",
        "Zap",
        "--redirect-uri",
        "https://zap.example.com/cb",
        stdout=out,
    )
    application = Application.objects.get(name="Zap")
    text = out.getvalue()
    assert f"client_id: {application.client_id}" in text
    secret = text.split("client_secret: ")[1].split()[0]
    assert application.client_secret != secret  # stored hashed
    assert application.redirect_uris == "https://zap.example.com/cb"


def test_the_command_refuses_a_redirect_uri_that_is_not_http(db):
    with pytest.raises(CommandError, match="redirect_uris"):
        call_command("oauth_app_create", "--name", "Bad", "--redirect-uri", "ftp://x.example/")
    assert not Application.objects.exists()


def test_a_public_app_connects_as_kits_own_client_library_does(alice_client, db):
    """Kit's WordPress library: a public client, the consent page at /oauth/authorize, JSON
    posted to /oauth/token with the client id and the verifier (no secret), refresh likewise."""
    import json

    app, _secret = oauth_application_create(
        name="WordPress", redirect_uris=[REDIRECT], confidential=False
    )
    verifier, challenge = pkce_pair()
    params = authorize_params(app, challenge)
    page = alice_client.get("/oauth/authorize", params)
    assert page.status_code == 200
    account_id = page.context["request"].account.id
    form = {**params, "scope": "public", "account_id": account_id, "allow": "Authorize"}
    code = parse_qs(urlparse(alice_client.post("/oauth/authorize", form)["Location"]).query)
    api = Client(enforce_csrf_checks=True)
    body = {
        "client_id": app.client_id,
        "grant_type": "authorization_code",
        "code": code["code"][0],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    response = api.post("/oauth/token", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    tokens = response.json()
    body = {
        "client_id": app.client_id,
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
    }
    response = api.post("/oauth/token", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    assert (
        api.get("/v4/account", headers=bearer(response.json()["access_token"])).status_code == 200
    )


def test_a_token_request_whose_body_is_not_a_json_object_is_a_400(app):
    response = Client().post("/oauth/token", "[1, 2", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not AccessToken.objects.exists()


def test_the_hourly_clean_up_deletes_dead_tokens_and_keeps_live_ones(alice_client, app):
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import RefreshToken

    from api.tasks import oauth_tokens_clear

    live = tokens_for(alice_client, app)
    dead = tokens_for(alice_client, app)
    revoked = Client().post(
        "/v4/oauth/revoke",
        {
            "token": dead["refresh_token"],
            "client_id": app.client_id,
            "client_secret": app.plain_secret,
        },
    )
    assert revoked.status_code == 200
    consent(alice_client, app, pkce_pair()[1])  # a code never exchanged
    Grant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert Grant.objects.count() == 1
    oauth_tokens_clear()
    assert not Grant.objects.exists()
    # A revoked refresh token is kept (revoked) until its lifetime ends: replaying it must be
    # recognised, and revoke its whole family (REFRESH_TOKEN_REUSE_PROTECTION).
    assert RefreshToken.objects.filter(revoked__isnull=True).count() == 1
    assert OAuthTokenAccount.objects.count() == 1
    response = Client().get("/v4/account", headers=bearer(live["access_token"]))
    assert response.status_code == 200


def test_the_settings_page_lists_the_connected_apps_and_disconnects_one(alice_client, app):
    tokens = tokens_for(alice_client, app)
    page = alice_client.get("/settings/api-keys/").content.decode()
    assert "Connected apps" in page and "Shopify Sync" in page
    url = f"/settings/api-keys/apps/{app.id}/disconnect/"
    assert alice_client.get(url).status_code == 200
    assert alice_client.post(url).status_code == 302
    assert Client().get("/v4/account", headers=bearer(tokens["access_token"])).status_code == 401
    refresh = token_call(app, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.status_code == 400
    assert "Connected apps" not in alice_client.get("/settings/api-keys/").content.decode()


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_account_cannot_disconnect_an_app_it_has_not_connected(
    alice_client, charlie_client, app, method
):
    tokens = tokens_for(alice_client, app)
    assert "Shopify Sync" not in charlie_client.get("/settings/api-keys/").content.decode()
    response = getattr(charlie_client, method)(f"/settings/api-keys/apps/{app.id}/disconnect/")
    assert response.status_code == 404
    assert Client().get("/v4/account", headers=bearer(tokens["access_token"])).status_code == 200
