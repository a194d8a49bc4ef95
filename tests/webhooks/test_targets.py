"""Webhook targets are public http(s) addresses: refused when given, and again when a POST
connects (against the address actually reached), unless the development setting allows them."""

from __future__ import annotations

import socket

import pytest

from automations.engine import events_consume
from subscribers.services import subscribers_tag
from tests.factories import SubscriberFactory, TagFactory
from tests.webhooks.conftest import NOW
from webhooks.delivery import deliveries_send
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import WebhookInputError, endpoint_create
from webhooks.targets import target_post, target_url_errors

PUBLIC = "93.184.215.14"


@pytest.fixture
def private_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.20/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",
    ],
)
def test_private_loopback_and_metadata_targets_are_refused(private_refused, url):
    (error,) = target_url_errors(url)
    assert "must be a public address" in error or "does not resolve" in error


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/hook", "must be an http or https URL"),
        ("file:///etc/passwd", "must be an http or https URL"),
        ("javascript:alert(1)", "must be an http or https URL"),
        ("https:///hook", "must name a host"),
        ("http://example.com:99999/hook", "is not a valid URL"),
        ("", "is required"),
    ],
)
def test_urls_that_are_not_http_targets_are_refused(private_refused, url, problem):
    (error,) = target_url_errors(url)
    assert problem in error


def test_a_public_address_is_accepted(private_refused, monkeypatch):
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", (PUBLIC, 443))]
    )
    assert target_url_errors("https://hooks.example.com/kit") == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(private_refused, monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET, 1, 6, "", (PUBLIC, 443)),
            (socket.AF_INET, 1, 6, "", ("10.1.2.3", 443)),
        ],
    )
    assert target_url_errors("https://hooks.example.com/kit") != []


@pytest.mark.django_db
def test_a_refused_endpoint_stores_nothing(private_refused, account_a):
    with pytest.raises(WebhookInputError):
        endpoint_create(account=account_a, url="http://127.0.0.1/", events=["subscriber.created"])
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_a_name_rebound_to_loopback_is_refused_at_delivery(
    private_refused, monkeypatch, account_a, receiver
):
    """A name that resolved to a public address when the endpoint was created and resolves to
    loopback when the POST connects (DNS rebinding): the connection's own peer address is
    checked, and nothing is POSTed."""
    answers = iter([PUBLIC, "127.0.0.1"])
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    tag = TagFactory(account=account_a)
    endpoint_create(
        account=account_a,
        url=f"http://rebind.test:{receiver.port}/hook",
        events=["subscriber.tag_added"],
    )
    person = SubscriberFactory(account=account_a)
    subscribers_tag(account_id=account_a.pk, tag_id=tag.pk, subscriber_ids=[person.pk])
    events_consume(now=NOW)

    report = deliveries_send(now=NOW)

    assert report.retrying == 1
    assert receiver.received == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None
    assert "refused" in attempt.error and "127.0.0.1" in attempt.error
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.RETRYING


def test_a_receiver_that_never_answers_times_out_and_says_so(settings):
    """A read timeout (a setting) bounds each POST; the log says it timed out."""
    settings.WEBHOOK_READ_TIMEOUT = 1
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        answer = target_post(
            f"http://127.0.0.1:{silent.getsockname()[1]}/hook", body=b"{}", headers={}
        )
    finally:
        silent.close()
    assert (answer.status, answer.error) == (None, "timed out")
    assert 900 <= answer.duration_ms < 5000


def test_a_closed_port_is_connection_refused():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    answer = target_post(f"http://127.0.0.1:{port}/hook", body=b"{}", headers={})
    assert (answer.status, answer.error) == (None, "connection refused")
