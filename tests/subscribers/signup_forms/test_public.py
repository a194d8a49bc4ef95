"""The public form endpoints over HTTP: answers for browsers and for the embed script, list
bombing defences, bad input, view counting, confirmation and incentive links."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.core import mail, signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.http import int_to_base36

from convertkit.redis import redis_client
from subscribers.models import CustomField, Form, Signup, Subscriber
from subscribers.signup_forms.counters import form_views_flush, form_views_pending
from subscribers.signup_forms.services import form_archive, form_create, form_incentive_file_set
from subscribers.signup_forms.signup import confirmation_token, incentive_token
from tests.factories import SubscriberFactory

JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def form(account_a):
    CustomField.objects.create(account=account_a, key="city", label="City")
    return form_create(
        account=account_a,
        name="Newsletter",
        fields=[{"key": "email"}, {"key": "first_name", "required": True}, {"key": "city"}],
        tag_names=["newsletter"],
    )


@pytest.fixture
def visitor():
    return Client(REMOTE_ADDR="203.0.113.7")


def post(visitor, form, data, **extra):
    return visitor.post(f"/f/{form.uid}/subscribe", data, **extra)


def test_script_gets_json_with_cors_and_the_forms_message(visitor, form):
    response = post(visitor, form, {"email": "reader@example.org", "first_name": "Rita"}, **JSON)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {
        "ok": True,
        "message": "Thanks! Now check your email to confirm.",
        "redirect_url": "",
        "confirmation_required": True,
    }
    assert Subscriber.objects.filter(email="reader@example.org").exists()


def test_preflight_is_answered_for_any_origin(visitor, form):
    response = visitor.options(
        f"/f/{form.uid}/subscribe",
        HTTP_ORIGIN="https://ann.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_plain_post_is_exempt_from_csrf_and_ignores_the_session(form, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)  # a creator's session on the same site gives the post no powers

    response = post(browser, form, {"email": "reader@example.org", "first_name": "Rita"})

    assert response.status_code == 200
    assert Subscriber.objects.get().state == Subscriber.State.UNCONFIRMED


def test_redirect_form_sends_the_browser_on_and_tells_the_script(visitor, form):
    Form.objects.filter(pk=form.pk).update(
        success_action=Form.SuccessAction.REDIRECT, redirect_url="https://ann.example/thanks"
    )
    data = {"email": "reader@example.org", "first_name": "Rita"}

    response = post(visitor, form, data)
    scripted = post(visitor, form, data, **JSON)

    assert (response.status_code, response["Location"]) == (303, "https://ann.example/thanks")
    assert scripted.json()["redirect_url"] == "https://ann.example/thanks"


def test_invalid_email_shows_the_form_again_with_the_error_and_the_typed_values(visitor, form):
    response = post(visitor, form, {"email": "not-an-address", "first_name": "Rita"})

    assert response.status_code == 400
    content = response.content.decode()
    assert "is not a valid email address" in content or "is not an email address" in content
    assert 'value="Rita"' in content
    assert not Subscriber.objects.exists()


def test_typed_markup_shown_again_is_escaped_not_run(visitor, form):
    attack = '"><script>alert(1)</script>'

    response = post(visitor, form, {"email": "not-an-address", "first_name": attack})

    content = response.content.decode()
    assert response.status_code == 400
    assert "<script>alert(1)</script>" not in content
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in content


def test_the_creators_words_on_the_hosted_page_are_escaped(visitor, form):
    Form.objects.filter(pk=form.pk).update(
        headline="<img src=x onerror=alert(1)>", consent_text="<script>alert(2)</script>"
    )

    content = visitor.get(f"/f/{form.uid}/").content.decode()

    assert "<img src=x" not in content and "<script>alert(2)" not in content
    assert "&lt;img src=x onerror=alert(1)&gt;" in content


def test_script_gets_each_fields_error(visitor, form):
    response = post(visitor, form, {"email": "", "first_name": ""}, **JSON)

    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False
    assert body["errors"] == {
        "email": "The email address is empty.",
        "first_name": "First name is required.",
    }


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "bot@mailinator.com"}, "email", "throwaway"),
        ({"email": "bot@eu.yopmail.com"}, "email", "throwaway"),
        ({"first_name": "Rita\r\nBcc: victim@example.org"}, "first_name", "one line"),
        ({"first_name": "R" * 256}, "first_name", "at most 255"),
        ({"city": "x" * 2001}, "city", "at most 2000"),
        ({"account": "2"}, "__all__", "no field named account"),
        ({"tags": "vip"}, "__all__", "no field named tags"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(visitor, form, data, field, message):
    existing = SubscriberFactory(
        account=form.account, email="reader@example.org", first_name="Rita"
    )

    response = post(
        visitor, form, {"email": "reader@example.org", "first_name": "Rita", **data}, **JSON
    )

    assert response.status_code == 400
    assert message in response.json()["errors"][field]
    existing.refresh_from_db()
    assert (existing.first_name, existing.state) == ("Rita", Subscriber.State.ACTIVE)
    assert not existing.taggings.exists()
    assert not Signup.objects.exists()
    assert Subscriber.objects.count() == 1


def test_another_accounts_custom_field_is_unknown_to_this_form(visitor, form, account_b):
    b_form = form_create(account=account_b, name="B")

    response = post(visitor, b_form, {"email": "reader@example.org", "city": "Lyon"}, **JSON)

    assert response.status_code == 400
    assert "no field named city" in response.json()["errors"]["__all__"]
    assert not Subscriber.objects.exists()


def test_unknown_or_archived_form_gets_a_clear_404(visitor, form):
    form_archive(form=form)

    html = post(visitor, form, {"email": "reader@example.org"})
    scripted = post(visitor, form, {"email": "reader@example.org"}, **JSON)
    unknown = visitor.post("/f/000000000000/subscribe", {"email": "reader@example.org"}, **JSON)
    page = visitor.get(f"/f/{form.uid}/")

    assert html.status_code == 404 and b"This form is not available" in html.content
    assert scripted.status_code == 404 and scripted.json()["ok"] is False
    assert unknown.status_code == 404
    assert page.status_code == 404
    assert not Subscriber.objects.exists()


def test_filled_honeypot_looks_like_success_and_stores_nothing(visitor, form):
    response = post(
        visitor,
        form,
        {"email": "victim@example.org", "first_name": "V", "ck_website": "http://spam"},
        **JSON,
    )

    assert response.status_code == 200 and response.json()["ok"] is True
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


def test_one_ip_is_stopped_after_its_limit_with_retry_after(visitor, form, settings):
    settings.SIGNUP_LIMIT_PER_IP = (3, 600)
    answers = [
        post(visitor, form, {"email": f"r{n}@example.org", "first_name": "R"}, **JSON)
        for n in range(4)
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert "try again in" in answers[-1].json()["message"]
    assert 0 < int(answers[-1]["Retry-After"]) <= 600
    assert Subscriber.objects.count() == 3
    other_ip = Client(REMOTE_ADDR="198.51.100.9")
    assert post(other_ip, form, {"email": "r9@example.org", "first_name": "R"}).status_code == 200


def test_one_address_is_stopped_after_its_limit_from_any_ip(form, settings):
    settings.SIGNUP_LIMIT_PER_ADDRESS = (2, 3600)
    answers = [
        post(
            Client(REMOTE_ADDR=f"198.51.100.{n}"),
            form,
            {"email": "victim@example.org", "first_name": "V"},
        )
        for n in range(3)
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert b"try again in" in answers[-1].content
    assert Signup.objects.count() == 2


def test_one_form_is_stopped_after_its_limit(form, settings):
    settings.SIGNUP_LIMIT_PER_FORM = (2, 600)
    answers = [
        post(
            Client(REMOTE_ADDR=f"198.51.100.{n}"),
            form,
            {"email": f"r{n}@example.org", "first_name": "R"},
        )
        for n in range(3)
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert Signup.objects.count() == 2


def test_client_ip_comes_from_the_trusted_proxy_only(form, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.50")

    post(client, form, {"email": "reader@example.org", "first_name": "R"})

    assert Signup.objects.get().ip == "203.0.113.50"


def test_signups_still_work_when_redis_is_down(visitor, form, settings):
    redis_client.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = post(visitor, form, {"email": "reader@example.org", "first_name": "Rita"})
        page = visitor.get(f"/f/{form.uid}/")
    finally:
        redis_client.cache_clear()

    assert response.status_code == 200
    assert page.status_code == 200
    assert Subscriber.objects.filter(email="reader@example.org").exists()


def test_get_on_the_endpoint_leads_to_the_hosted_page(visitor, form):
    response = visitor.get(f"/f/{form.uid}/subscribe")

    assert response.status_code == 302
    assert response["Location"].endswith(f"/f/{form.uid}/")


def test_views_are_counted_in_redis_and_flushed_to_the_form(visitor, form):
    visitor.get(f"/f/{form.uid}/")
    pixel = visitor.get(f"/f/{form.uid}/view.gif")
    visitor.get("/f/ffffffffffff/view.gif")  # no such form: counted in Redis, ignored by the flush

    assert pixel["Content-Type"] == "image/gif" and len(pixel.content) == 43
    assert "no-cache" in pixel["Cache-Control"] or "no-store" in pixel["Cache-Control"]
    assert form_views_pending(forms=[form]) == {form.pk: 2}
    assert form_views_flush() == 3
    form.refresh_from_db()
    assert form.view_count == 2
    assert form_views_pending(forms=[form]) == {}
    assert form_views_flush() == 0


def test_a_flush_that_died_is_finished_by_the_next(visitor, form):
    visitor.get(f"/f/{form.uid}/view.gif")
    redis_client().rename("ck:form-views", "ck:form-views:flushing")  # died after the RENAME
    visitor.get(f"/f/{form.uid}/view.gif")

    form_views_flush()
    form_views_flush()

    form.refresh_from_db()
    assert form.view_count == 2


def test_a_flush_while_another_runs_leaves_the_views_to_it(visitor, form):
    visitor.get(f"/f/{form.uid}/view.gif")
    redis_client().set("ck:form-views:lock", "1")  # another worker is flushing

    assert form_views_flush() == 0
    redis_client().delete("ck:form-views:lock")
    assert form_views_flush() == 1

    form.refresh_from_db()
    assert form.view_count == 1


def test_embed_script_is_served_at_a_stable_url(visitor):
    response = visitor.get("/f/embed.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert b"ck-form" in response.content


def _signup(visitor, form) -> Signup:
    post(visitor, form, {"email": "reader@example.org", "first_name": "Rita"})
    return Signup.objects.get()


def test_tampered_confirmation_link_gets_a_404_page(visitor, form):
    token = confirmation_token(_signup(visitor, form))
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")

    for path in (f"/f/confirm/{tampered}/", "/f/confirm/garbage/", "/f/confirm/1:2:3/"):
        response = visitor.post(path)
        assert response.status_code == 404
        assert b"not valid" in response.content
    assert Subscriber.objects.get().state == Subscriber.State.UNCONFIRMED


def test_expired_confirmation_link_changes_nothing_and_offers_the_form(visitor, form, settings):
    signup = _signup(visitor, form)
    old = signing.TimestampSigner(salt="subscribers.form-confirm", algorithm="sha256")
    token = old.sign(int_to_base36(signup.pk))
    settings.CONFIRMATION_LINK_DAYS = 1

    with mock.patch("time.time", return_value=time.time() + 2 * 86400):
        response = visitor.post(f"/f/confirm/{token}/")

    assert response.status_code == 410
    assert b"has expired" in response.content
    assert f"/f/{form.uid}/".encode() in response.content
    assert Subscriber.objects.get().state == Subscriber.State.UNCONFIRMED


def test_confirmation_link_of_an_erased_subscriber_is_not_valid(visitor, form):
    signup = _signup(visitor, form)
    token = confirmation_token(signup)
    Subscriber.objects.all().delete()

    assert visitor.post(f"/f/confirm/{token}/").status_code == 404


def test_incentive_file_is_downloaded_only_after_confirmation(visitor, form):
    form_incentive_file_set(
        form=form, name="recipes.pdf", content_type="application/pdf", data=b"%PDF-1.4 recipes"
    )
    signup = _signup(visitor, form)
    url = f"/f/download/{incentive_token(signup)}/"

    assert visitor.get(url).status_code == 404  # still pending
    visitor.post(f"/f/confirm/{confirmation_token(signup)}/")
    response = visitor.get(url)

    assert response.status_code == 200
    assert response.content == b"%PDF-1.4 recipes"
    assert response["Content-Disposition"] == 'attachment; filename="recipes.pdf"'
    assert visitor.get(url[:-3] + "x/").status_code == 404


def test_confirming_never_reads_the_incentive_files_bytes(visitor, form):
    form_incentive_file_set(
        form=form, name="recipes.pdf", content_type="application/pdf", data=b"%PDF" * 1000
    )
    token = confirmation_token(_signup(visitor, form))

    with CaptureQueriesContext(connection) as queries:
        response = visitor.post(f"/f/confirm/{token}/")

    assert b"Get your download" in response.content
    file_reads = [q["sql"] for q in queries if "subscribers_formincentivefile" in q["sql"]]
    assert file_reads and not any('"data"' in sql for sql in file_reads)


def test_confirmation_page_is_never_cached(visitor, form):
    token = confirmation_token(_signup(visitor, form))

    response = visitor.get(f"/f/confirm/{token}/")

    assert "max-age=0" in response["Cache-Control"]


def test_a_malformed_forwarded_address_is_not_stored_and_the_signup_works(form, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-ip")

    response = post(client, form, {"email": "reader@example.org", "first_name": "R"})

    assert response.status_code == 200
    assert Signup.objects.get().ip is None


def test_ipv6_clients_are_limited_per_64_network(form, settings):
    settings.SIGNUP_LIMIT_PER_IP = (2, 600)
    answers = [
        post(
            Client(REMOTE_ADDR=f"2001:db8:1:2::{n}"),
            form,
            {"email": f"r{n}@example.org", "first_name": "R"},
        )
        for n in range(1, 4)
    ]
    other_network = post(
        Client(REMOTE_ADDR="2001:db8:1:3::1"), form, {"email": "r9@example.org", "first_name": "R"}
    )

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert other_network.status_code == 200
