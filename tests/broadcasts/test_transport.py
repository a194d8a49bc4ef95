"""The transport: one connection per batch and one true outcome per message, against a real
SMTP server (aiosmtpd) and a local HTTP server speaking Postmark's batch API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import django
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from bench.fake_postmark import FakePostmark
from bench.smtp_sink import CountingSink
from broadcasts.transport import (
    DELIVERY_METADATA,
    Outcome,
    PerMessageTransport,
    PostmarkBatchTransport,
    SmtpTransport,
    open_transport,
)
from convertkit.dev.devstack import free_port

SMTP = "django.core.mail.backends.smtp.EmailBackend"
POSTMARK = "anymail.backends.postmark.EmailBackend"
ANYMAIL_TEST = "anymail.backends.test.EmailBackend"


def use_backend(settings, backend: str, **options) -> None:
    """Points the default mailer at `backend` (MAILERS on Django 6.1+, EMAIL_* before)."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": backend, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = backend
        for name, value in options.items():
            setattr(settings, f"EMAIL_{name.upper()}", value)


def use_smtp(settings, port: int, *, timeout: int = 10) -> None:
    use_backend(settings, SMTP, host="127.0.0.1", port=port, timeout=timeout)


def use_postmark(settings, url: str, *, timeout: float = 10) -> None:
    use_backend(settings, POSTMARK)
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "test-token",
        "POSTMARK_API_URL": url,
        "REQUESTS_TIMEOUT": timeout,
    }


def message(n: int, *, to: str | None = None) -> EmailMultiAlternatives:
    """A broadcast-like message of its own: subject, both parts and headers differ per n."""
    built = EmailMultiAlternatives(
        subject=f"Soup season, reader {n}",
        body=f"Hello reader {n}",
        from_email="Ann Example <ann@news.example.com>",
        to=[to or f"reader{n}@example.org"],
        headers={
            "List-Unsubscribe": f"<https://mail.example.com/u/token{n}/>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Message-ID": f"<d{n}.b1@mail.example.com>",
        },
    )
    built.attach_alternative(f"<p>Hello reader {n}</p>", "text/html")
    return built


def items(count: int, start: int = 1) -> list[tuple[int, EmailMultiAlternatives]]:
    return [(n, message(n)) for n in range(start, start + count)]


def statuses(outcomes: list[Outcome]) -> list[tuple[int, str]]:
    return [(outcome.delivery_id, outcome.status) for outcome in outcomes]


def address(n: int) -> str:
    return f"reader{n}@example.org"


# --- choosing the transport ---------------------------------------------------------------------


def test_the_configured_backend_chooses_the_transport_and_its_call_size(settings):
    use_smtp(settings, 2525)
    with open_transport() as transport:
        assert isinstance(transport, SmtpTransport)
        assert transport.max_call_size == 20

    use_postmark(settings, "http://127.0.0.1:9/")
    with open_transport() as transport:
        assert isinstance(transport, PostmarkBatchTransport)
        assert transport.max_call_size == 500

    use_backend(settings, ANYMAIL_TEST)
    with open_transport() as transport:
        assert isinstance(transport, PerMessageTransport)
        assert transport.max_call_size == 1


# --- SMTP ---------------------------------------------------------------------------------------


def test_smtp_sends_each_message_of_a_call_over_one_connection(settings):
    with CountingSink() as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            first = transport.send_call(items(5))
            second = transport.send_call(items(3, start=6))

    assert statuses(first + second) == [(n, "sent") for n in range(1, 9)]
    assert sink.counter.recipients == {address(n): 1 for n in range(1, 9)}
    assert sink.handler.connections == 1


def test_smtp_4xx_refusals_are_retried_5xx_refusals_fail_and_the_others_are_sent(settings):
    refuse = {address(2): "450 4.2.1 Mailbox busy", address(4): "550 5.1.1 No such user"}
    with CountingSink(refuse=refuse) as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            outcomes = transport.send_call(items(5))

    assert statuses(outcomes) == [
        (1, "sent"),
        (2, "retry"),
        (3, "sent"),
        (4, "failed"),
        (5, "sent"),
    ]
    assert "450" in outcomes[1].error and "550" in outcomes[3].error
    assert sink.counter.recipients == {address(1): 1, address(3): 1, address(5): 1}
    assert sink.handler.connections == 1


def test_smtp_connection_dropped_after_data_leaves_that_message_unknown_and_retries_the_rest(
    settings,
):
    with CountingSink(drop_after_data={address(3)}) as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            outcomes = transport.send_call(items(5))
            # The next call opens a new connection and goes on.
            later = transport.send_call(items(2, start=4))

    assert statuses(outcomes) == [
        (1, "sent"),
        (2, "sent"),
        (3, "unknown"),
        (4, "retry"),
        (5, "retry"),
    ]
    assert "after DATA" in outcomes[2].error
    assert statuses(later) == [(4, "sent"), (5, "sent")]
    assert sink.counter.recipients == {address(n): 1 for n in (1, 2, 4, 5)}


def test_smtp_connection_dropped_before_data_is_reopened_once_and_nothing_is_lost(settings):
    with CountingSink(drop_before_data={address(2)}) as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            outcomes = transport.send_call(items(4))

    assert statuses(outcomes) == [(n, "sent") for n in range(1, 5)]
    assert sink.counter.recipients == {address(n): 1 for n in range(1, 5)}
    assert sink.handler.connections == 2


def test_smtp_connection_dropping_twice_before_data_retries_the_rest_of_the_call(settings):
    with CountingSink(drop_before_data={address(2), address(3)}) as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            outcomes = transport.send_call(items(4))

    assert statuses(outcomes) == [(1, "sent"), (2, "sent"), (3, "retry"), (4, "retry")]
    assert sink.counter.recipients == {address(1): 1, address(2): 1}


def test_smtp_idle_connection_closed_by_a_restarted_server_is_reopened_for_the_next_call(
    settings,
):
    port = free_port()
    with CountingSink(port=port) as sink:
        use_smtp(settings, port)
        transport = open_transport()
        first = transport.send_call(items(2))
    with CountingSink(port=port) as restarted:
        second = transport.send_call(items(2, start=3))
        transport.close()

    assert statuses(first + second) == [(n, "sent") for n in range(1, 5)]
    assert sink.counter.recipients == {address(1): 1, address(2): 1}
    assert restarted.counter.recipients == {address(3): 1, address(4): 1}


def test_smtp_server_not_answering_data_in_time_leaves_the_message_unknown(settings):
    with CountingSink(stall_data=3.0) as sink:
        use_smtp(settings, sink.port, timeout=1)
        with open_transport() as transport:
            outcomes = transport.send_call(items(3))

    assert statuses(outcomes) == [(1, "unknown"), (2, "retry"), (3, "retry")]
    assert "Timeout" in outcomes[0].error or "timed out" in outcomes[0].error


def test_smtp_connection_refused_retries_the_whole_call_and_never_raises(settings):
    use_smtp(settings, free_port())
    with open_transport() as transport:
        outcomes = transport.send_call(items(3))

    assert statuses(outcomes) == [(1, "retry"), (2, "retry"), (3, "retry")]
    assert all(outcome.error.startswith("not sent: ") for outcome in outcomes)


def test_smtp_message_with_a_header_injection_fails_alone(settings):
    bad = message(2, to="reader2@example.org\r\nBcc: everyone@example.org")
    with CountingSink() as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            outcomes = transport.send_call([(1, message(1)), (2, bad), (3, message(3))])

    assert statuses(outcomes) == [(1, "sent"), (2, "failed"), (3, "sent")]
    assert outcomes[1].error
    assert sink.counter.recipients == {address(1): 1, address(3): 1}


# --- Postmark -----------------------------------------------------------------------------------


def test_postmark_sends_different_messages_in_one_batch_request(settings):
    with FakePostmark(keep=True) as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            outcomes = transport.send_call(items(3))

    assert statuses(outcomes) == [(1, "sent"), (2, "sent"), (3, "sent")]
    assert len({outcome.esp_message_id for outcome in outcomes}) == 3
    assert all(outcome.esp_message_id for outcome in outcomes)
    assert fake.counter.requests == 1
    assert fake.counter.recipients == {address(n): 1 for n in (1, 2, 3)}
    [batch] = fake.received
    assert [m["Subject"] for m in batch] == [f"Soup season, reader {n}" for n in (1, 2, 3)]
    assert [m["HtmlBody"] for m in batch] == [f"<p>Hello reader {n}</p>" for n in (1, 2, 3)]
    assert [m["TextBody"] for m in batch] == [f"Hello reader {n}" for n in (1, 2, 3)]
    headers = {h["Name"]: h["Value"] for h in batch[1]["Headers"]}
    assert headers["List-Unsubscribe"] == "<https://mail.example.com/u/token2/>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == "<d2.b1@mail.example.com>"
    assert batch[0]["From"] == "Ann Example <ann@news.example.com>"


def test_postmark_rejected_messages_fail_rate_limited_ones_retry_and_the_rest_are_sent(settings):
    with FakePostmark(reject={address(2)}, slow_codes={address(4): 429}) as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            outcomes = transport.send_call(items(5))

    assert statuses(outcomes) == [
        (1, "sent"),
        (2, "failed"),
        (3, "sent"),
        (4, "retry"),
        (5, "sent"),
    ]
    assert "406" in outcomes[1].error and "429" in outcomes[3].error
    assert fake.counter.requests == 1
    assert fake.counter.recipients == {address(1): 1, address(3): 1, address(5): 1}


def test_postmark_answering_500_retries_every_message_of_the_call(settings):
    with FakePostmark(fail_status=500) as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            outcomes = transport.send_call(items(3))

    assert statuses(outcomes) == [(1, "retry"), (2, "retry"), (3, "retry")]
    assert "500" in outcomes[0].error
    assert fake.counter.copies == 0


def test_postmark_answering_429_retries_every_message_of_the_call(settings):
    with FakePostmark(fail_status=429) as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            outcomes = transport.send_call(items(2))

    assert statuses(outcomes) == [(1, "retry"), (2, "retry")]


def test_postmark_timing_out_after_the_request_was_sent_leaves_the_call_unknown(settings):
    with FakePostmark(stall=2.0) as fake:
        use_postmark(settings, fake.url, timeout=0.5)
        with open_transport() as transport:
            outcomes = transport.send_call(items(3))

        # The server did accept them: resending would have made second copies.
        assert fake.counter.recipients == {address(n): 1 for n in (1, 2, 3)}
    assert statuses(outcomes) == [(1, "unknown"), (2, "unknown"), (3, "unknown")]


def test_postmark_unreachable_retries_the_call(settings):
    use_postmark(settings, f"http://127.0.0.1:{free_port()}/")
    with open_transport() as transport:
        outcomes = transport.send_call(items(2))

    assert statuses(outcomes) == [(1, "retry"), (2, "retry")]
    assert outcomes[0].error.startswith("not sent: ")


def test_postmark_splits_a_call_larger_than_the_request_size_limit(settings):
    with FakePostmark(keep=True) as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            backend = transport.backend
            sized = message(1)
            sized.metadata = {DELIVERY_METADATA: "1"}  # as the transport sends it
            one_message = len(
                backend.build_message_payload(sized, backend.send_defaults).serialize_data()
            )
            transport.batch_bytes = 2 * one_message + 10
            outcomes = transport.send_call(items(5))

    assert statuses(outcomes) == [(n, "sent") for n in range(1, 6)]
    assert [len(batch) for batch in fake.received] == [2, 2, 1]
    assert fake.counter.recipients == {address(n): 1 for n in range(1, 6)}


def test_postmark_message_with_a_bad_address_fails_alone(settings):
    with FakePostmark() as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            outcomes = transport.send_call(
                [(1, message(1)), (2, message(2, to="not an address@")), (3, message(3))]
            )

    assert statuses(outcomes) == [(1, "sent"), (2, "failed"), (3, "sent")]
    assert fake.counter.recipients == {address(1): 1, address(3): 1}


# --- any other anymail ESP ----------------------------------------------------------------------


def test_other_esps_send_one_message_per_call_with_the_esp_message_id(settings):
    use_backend(settings, ANYMAIL_TEST)
    mail.outbox = []
    rejected = message(2)
    rejected.anymail_test_response = {
        "recipient_status": {address(2): AnymailRecipientStatus(message_id=None, status="rejected")}
    }
    unavailable = message(3)
    unavailable.anymail_test_response = AnymailAPIError("Service unavailable", status_code=503)
    with open_transport() as transport:
        outcomes = [
            transport.send_call([item])[0]
            for item in [(1, message(1)), (2, rejected), (3, unavailable)]
        ]

    assert statuses(outcomes) == [(1, "sent"), (2, "failed"), (3, "retry")]
    assert outcomes[0].esp_message_id == "0"
    assert "503" in outcomes[2].error


def test_smtp_envelope_addresses_are_the_ones_djangos_backend_would_use(settings):
    named = message(1, to='"Doe, Jo" <jo.doe+news@example.org>')
    international = message(2, to="Jürgen <jurgen@bücher.example>")
    with CountingSink() as sink:
        use_smtp(settings, sink.port)
        with open_transport() as transport:
            outcomes = transport.send_call([(1, named), (2, international)])

    assert statuses(outcomes) == [(1, "sent"), (2, "sent")]
    assert sink.counter.recipients == {
        "jo.doe+news@example.org": 1,
        "jurgen@xn--bcher-kva.example": 1,
    }


# --- the delivery named in each message's metadata ----------------------------------------------


def test_postmark_batch_names_each_messages_delivery_in_its_metadata(settings):
    tagged = message(2)
    tagged.metadata = {"campaign": "soup"}
    with FakePostmark(keep=True) as fake:
        use_postmark(settings, fake.url)
        with open_transport() as transport:
            outcomes = transport.send_call([(11, message(1)), (12, tagged), (13, message(3))])

    assert statuses(outcomes) == [(11, "sent"), (12, "sent"), (13, "sent")]
    [batch] = fake.received
    # Postmark hands Metadata back in its webhooks: a bounce finds its delivery by it.
    assert [m["Metadata"] for m in batch] == [
        {DELIVERY_METADATA: "11"},
        {"campaign": "soup", DELIVERY_METADATA: "12"},
        {DELIVERY_METADATA: "13"},
    ]


def test_other_esps_get_each_messages_delivery_in_its_metadata(settings):
    use_backend(settings, ANYMAIL_TEST)
    mail.outbox = []
    with open_transport() as transport:
        outcomes = [transport.send_call([(n, message(n))])[0] for n in (21, 22)]

    assert statuses(outcomes) == [(21, "sent"), (22, "sent")]
    assert [m.anymail_test_params["metadata"] for m in mail.outbox] == [
        {DELIVERY_METADATA: "21"},
        {DELIVERY_METADATA: "22"},
    ]


class _MailerSendHandler(BaseHTTPRequestHandler):
    """MailerSend's /v1/email: 202, the message id in a header, an empty body."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.server.received.append(
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        )
        self.send_response(202)
        self.send_header("X-Message-Id", f"ms-{len(self.server.received)}")
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_an_esp_whose_backend_refuses_metadata_still_gets_every_message(settings):
    """anymail's MailerSend backend refuses metadata: its messages go without it, matched by
    the ESP message id alone, rather than all failing."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MailerSendHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        use_backend(settings, "anymail.backends.mailersend.EmailBackend")
        settings.ANYMAIL = {
            "MAILERSEND_API_TOKEN": "test-token",
            "MAILERSEND_API_URL": f"http://127.0.0.1:{server.server_port}/v1/",
        }
        with open_transport() as transport:
            outcomes = [transport.send_call([(n, message(n))])[0] for n in (1, 2)]
    finally:
        server.shutdown()
        server.server_close()

    assert statuses(outcomes) == [(1, "sent"), (2, "sent")]
    assert [outcome.esp_message_id for outcome in outcomes] == ["ms-1", "ms-2"]
    assert [sent["to"] for sent in server.received] == [
        [{"email": address(1)}],
        [{"email": address(2)}],
    ]
