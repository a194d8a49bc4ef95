"""Rendering broadcasts: Liquid problems and limits, the frozen layout, the text part, the
preview, and the MIME bytes of each recipient's message."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from html import unescape

import django
import pytest
from django.core import mail
from django.test import override_settings

from broadcasts import rendering
from broadcasts.models import Broadcast, Delivery
from broadcasts.rendering import (
    BroadcastRenderer,
    RenderFailed,
    broadcast_problems,
    frozen_parts,
    preview,
)
from broadcasts.rendering.mime import PrebuiltMessage
from broadcasts.rendering.text import html_to_text
from subscribers.mail import PostalAddressMissing, SubscriberNotMailable
from subscribers.models import Subscriber
from subscribers.unsubscribe import unsubscribe_test_token, unsubscribe_token
from tests.factories import AccountFactory, CustomFieldFactory, SubscriberFactory
from tracking.links import link_marker, links_create
from tracking.tokens import click_token

GREETING = '{{ subscriber.first_name | default: "friend" }}'


@pytest.fixture
def account(db, settings):
    settings.SITE_URL = "https://mail.example.com"
    settings.TRACKING_URL = "https://t.mail.example.com"
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@mail.example.com"
    return AccountFactory(
        name="Ann's Kitchen",
        sender_name="Ann Example",
        sender_email="ann@news.example.com",
        postal_address="1 Main Street\nSpringfield",
    )


@pytest.fixture
def reader(account):
    return SubscriberFactory(account=account, email="reader@example.org", first_name="Rita")


def _broadcast(account, **fields) -> Broadcast:
    values = {"subject": "Soup season", "preview_text": "", "body": "Hello.", **fields}
    return Broadcast.objects.create(account=account, **values)


def _frozen(broadcast: Broadcast) -> Broadcast:
    """Frozen as broadcast_send freezes it, with its tracked links stored."""
    frozen = frozen_parts(broadcast)
    broadcast.frozen_subject, broadcast.frozen_html, broadcast.frozen_text = frozen[:3]
    links_create(broadcast=broadcast, urls=frozen.links)
    return broadcast


def _message(broadcast: Broadcast, subscriber: Subscriber, delivery_id: int = 1):
    return BroadcastRenderer(broadcast).message(delivery_id=delivery_id, subscriber=subscriber)


def _raw(message) -> bytes:
    """The bytes Django's SMTP backend hands to smtplib."""
    return message.message(policy=policy.SMTP).as_bytes()


def _parsed(message):
    return BytesParser(policy=policy.default).parsebytes(_raw(message))


def _parts(parsed) -> tuple[str, str]:
    """The text and HTML bodies, with the line ends of the message (CRLF over SMTP) as in
    Python, and without the line end Django's own message() adds after each."""
    return tuple(
        parsed.get_body(preferencelist=(subtype,)).get_content().replace("\r\n", "\n").rstrip("\n")
        for subtype in ("plain", "html")
    )


def _problems(account, **fields) -> list[tuple[str, int | None, str]]:
    return [tuple(problem) for problem in broadcast_problems(_broadcast(account, **fields))]


# Problems ------------------------------------------------------------------------------------


def test_a_broadcast_using_known_variables_has_no_problems(account):
    CustomFieldFactory(account=account, key="company")

    problems = _problems(
        account,
        subject=f"Hi {GREETING}",
        preview_text="For {{ subscriber.email }}",
        body=(
            f"Hello {GREETING} of {{{{ subscriber.company | default: 'your company' }}}}, "
            "{{ subscriber.fields.company }} ({{ account.name }}).\n\n"
            "{% for i in (1..3) %}{{ i }}{% endfor %} [Leave]({{ unsubscribe_url }})"
        ),
    )

    assert problems == []


def test_syntax_error_is_reported_on_its_line(account):
    problems = _problems(account, body="Hello\n\nThis {% if %} is broken\n")

    assert len(problems) == 1
    part, line, message = problems[0]
    assert (part, line) == ("body", 3)
    assert "expression" in message


def test_unclosed_block_is_a_problem(account):
    ((part, _, message),) = _problems(account, body="Hi\n{% if subscriber.first_name %}\nthere")

    assert part == "body"
    assert "endif" in message


def test_unknown_subscriber_variable_is_reported_on_its_line_with_a_suggestion(account):
    CustomFieldFactory(account=account, key="company")

    problems = _problems(account, body="Hello\n{{ subscriber.frist_name }}\n")

    assert len(problems) == 1
    part, line, message = problems[0]
    assert (part, line) == ("body", 2)
    assert "subscriber.frist_name" in message
    assert "did you mean “first_name”" in message
    assert "company" in message


def test_unknown_variables_are_found_even_in_branches_that_would_not_render(account):
    problems = _problems(
        account, body="{% if false %}\n{{ coupon_code }}\n{% endif %}\n{{ subscriber.fields.city }}"
    )

    assert [(line, "coupon_code" in message) for _, line, message in problems] == [
        (2, True),
        (4, False),
    ]
    assert "subscriber.fields.city" in problems[1][2]


def test_unknown_filter_is_reported_on_its_line(account):
    ((part, line, message),) = _problems(account, body="a\nb\n{{ subscriber.email | shout }}")

    assert (part, line) == ("body", 3)
    assert "shout" in message


@pytest.mark.parametrize(
    "body, word",
    [
        ("{{ subscriber.first_name | safe }}", "safe"),
        ('{% include "footer" %}', "include"),
        ('{% render "footer" %}', "render"),
    ],
)
def test_safe_filter_and_partials_are_not_available(account, body, word):
    ((_, _, message),) = _problems(account, body=body)

    assert word in message


def test_each_problem_names_its_part(account):
    problems = _problems(
        account, subject="Hi {{ nobody }}", preview_text="{% if %}", body="{{ subscriber.email }}"
    )

    assert [(part, line) for part, line, _ in problems] == [
        ("subject", 1),
        ("preview_text", 1),
    ]


# Hostile templates: each fails fast, with a clear message, instead of stalling a worker.


@pytest.mark.parametrize(
    "body, expected",
    [
        ("Hi\n{% for i in (1..1000000000) %}x{% endfor %}", "loop iteration limit"),
        (
            "Hi\n{% for i in (1..1000) %}{% for j in (1..1000) %}x{% endfor %}{% endfor %}",
            "loop iteration limit",
        ),
        # Each loop alone is allowed; together they would run 20 million iterations.
        ("Hi\n" + "{% for i in (1..9000) %}{% endfor %}" * 1000, "in all loops together"),
        ('Hi\n{{ (1..100000000) | join: "," }}', "range of 100,000,000 items"),
        ("Hi\n{{ (1..100000000) | reverse | first }}", "range of 100,000,000 items"),
        (
            "Hi\n{% capture s %}" + "x" * 1000 + "{% endcapture %}"
            "{% for i in (1..2000) %}{{ s }}{% endfor %}",
            "output stream limit",
        ),
        (
            'Hi\n{% assign s = "xxxxxxxxxx" %}' + "{% assign s = s | append: s %}" * 30,
            "local namespace limit",
        ),
        ("Hi\n" + "{% if true %}" * 40 + "deep" + "{% endif %}" * 40, "nesting limit"),
    ],
    ids=[
        "endless-loop",
        "nested-loops",
        "many-loops",
        "huge-range-join",
        "huge-range-reverse",
        "megabytes-of-output",
        "doubling-string",
        "deep-nesting",
    ],
)
def test_hostile_template_is_a_problem_found_quickly(account, body, expected):
    problems = _problems(account, body=body)

    assert problems == [("body", 2, problems[0][2])]
    assert expected in problems[0][2]


def test_template_with_too_much_liquid_is_a_problem(account):
    ((_, _, message),) = _problems(account, body="{{ subscriber.email }} " * 2500)

    assert "Too much Liquid" in message


def test_recipient_whose_data_hits_a_limit_fails_alone(account, reader):
    CustomFieldFactory(account=account, key="visits")
    broadcast = _frozen(
        _broadcast(
            account,
            body="{% for i in (1..subscriber.visits) %}*{% endfor %}",
        )
    )
    reader.fields = {"visits": 5}
    greedy = SubscriberFactory(account=account, fields={"visits": 10**9})

    message = _message(broadcast, reader)
    with pytest.raises(RenderFailed, match="loop iteration limit"):
        _message(broadcast, greedy)

    assert "*****" in message.body


# Freezing ------------------------------------------------------------------------------------


def test_frozen_html_is_laid_out_sanitised_and_css_inlined(account):
    broadcast = _broadcast(
        account,
        preview_text="Five soups for {{ subscriber.first_name }}",
        body=(
            f"# Hello {GREETING}\n\n"
            "Some <b>soup</b>.<script>alert(1)</script><img src=x onerror=alert(1)>\n\n"
            '<a href="javascript:alert(1)">click</a> <iframe src="https://evil.example"></iframe>'
        ),
    )

    html = frozen_parts(broadcast).html

    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "alert(1)" not in html and "onerror" not in html
    assert "javascript:" not in html and "<iframe" not in html
    assert f"Hello {GREETING}</h1>" in html
    # The layout's stylesheet is in style attributes; the media queries stay in a <style>.
    assert re.search(r'<td class="email-body"[^>]* style="[^"]*padding: 32px', html)
    assert re.search(r'<h1 style="[^"]*line-height: 1\.25', html)
    assert "@media only screen and (max-width: 620px)" in html
    # The preview text is the hidden preheader, still Liquid.
    assert re.search(
        r'<div style="display:none;[^"]*">Five soups for \{\{ subscriber.first_name \}\}', html
    )
    # The footer: account name, postal address, and the unsubscribe link, resolved per recipient.
    assert "Ann's Kitchen" in html and "1 Main Street<br>Springfield" in html
    assert '<a href="{{ unsubscribe_url }}"' in html


def test_markup_cannot_hide_html_from_the_sanitiser(account, reader):
    # Liquid ends the comment tag at its "%}" whatever the quotes; so must the sanitiser's view.
    broadcast = _frozen(
        _broadcast(account, body="{% # don't %}<script>alert(1)</script> it's {% # ok %}")
    )

    html = _message(broadcast, reader).alternatives[0][0]

    assert "<script" not in html and "alert(1)" not in html
    assert " it's" in html


def test_html_body_keeps_email_markup(account):
    broadcast = _broadcast(
        account,
        body_format=Broadcast.BodyFormat.HTML,
        body=(
            '<table width="100%" cellpadding="4"><tr><td align="center" style="color: #c00; '
            'position: fixed">Red</td></tr></table><p><a href="https://example.com/a?b=1&c=2">'
            "A link</a></p>"
        ),
    )

    frozen = frozen_parts(broadcast)
    html = frozen.html

    assert '<table width="100%" cellpadding="4"' in html
    assert re.search(r'<td align="center" style="color:#c00[^"]*">Red', html)
    assert "position" not in html
    # The link is tracked when sent, its URL as a browser reads it; the preview shows it.
    assert f'<a href="{link_marker(1)}"' in html
    assert frozen.links == ("https://example.com/a?b=1&c=2",)
    assert 'href="https://example.com/a?b=1&amp;c=2"' in preview(broadcast).html


def test_liquid_blocks_survive_markdown_lists(account, reader):
    broadcast = _frozen(
        _broadcast(
            account,
            body=(
                "Before\n\n{% if subscriber.first_name == 'Rita' %}\n- one\n- two\n{% endif %}\n"
                "After"
            ),
        )
    )
    stranger = SubscriberFactory(account=account, first_name="Sam")

    for_rita, for_sam = _message(broadcast, reader), _message(broadcast, stranger)

    assert "<li>two</li>" in for_rita.alternatives[0][0]
    assert "<li>" not in for_sam.alternatives[0][0].split('class="email-body"')[1]
    assert "- one\n- two" in for_rita.body and "- one" not in for_sam.body
    assert "Before\n\nAfter" in for_sam.body


def test_braces_typed_outside_liquid_stay_literal(account, reader):
    account.name = "The {{ best }} {% kitchen %}"
    account.save()
    broadcast = _frozen(_broadcast(account, body="Write {% raw %}{{ name }}{% endraw %} here."))

    message = _message(broadcast, reader)
    text, html = _parts(_parsed(message))

    assert "Write {{ name }} here." in text
    assert "The {{ best }} {% kitchen %}" in text
    # In the HTML as a browser shows it.
    assert "Write {{ name }} here." in unescape(html)
    assert "The {{ best }} {% kitchen %}" in unescape(html)


def test_freezing_needs_the_postal_address(account):
    account.postal_address = " \n"
    account.save()

    with pytest.raises(PostalAddressMissing):
        frozen_parts(_broadcast(account))


def test_renderer_refuses_a_broadcast_that_was_never_frozen(account):
    with pytest.raises(RenderFailed, match="not been frozen"):
        BroadcastRenderer(_broadcast(account))


# The text part -------------------------------------------------------------------------------


def test_text_part_is_written_from_the_html():
    html = (
        "<h1>Soup   season</h1><p>Hot <b>soup</b>,\n with <a href='https://example.com/soup'>"
        "our recipe</a> and <a href='https://example.com'>https://example.com</a>.</p>"
        "<ul><li>Leek</li><li>Pumpkin<ol><li>roast</li><li>blend</li></ol></li></ul>"
        "<ol start='3'><li><p>Third</p></li></ol>"
        "<p>Line one<br>line two &amp; more</p><hr>"
        "<blockquote><p>Quoted</p></blockquote>"
        "<table><tr><td>Name</td><td>Price</td></tr><tr><td>Leek</td><td>3</td></tr></table>"
        "<pre>  keep\n    spacing</pre>"
        "<p style='display: none'>hidden</p><style>p{color:red}</style>"
        "<p><img src='https://example.com/x.png' alt='A bowl'> <a href='mailto:ann@example.com'>"
        "ann@example.com</a> <a href='#top'>Top</a></p>"
    )

    assert html_to_text(html) == (
        "Soup season\n\n"
        "Hot soup, with our recipe (https://example.com/soup) and https://example.com.\n\n"
        "- Leek\n- Pumpkin\n  1. roast\n  2. blend\n\n"
        "3. Third\n\n"
        "Line one\nline two & more\n\n"
        "----------\n\n"
        "Quoted\n\n"
        "Name Price\nLeek 3\n\n"
        "  keep\n    spacing\n\n"
        "A bowl ann@example.com Top"
    )


def test_message_text_part_has_the_body_links_and_footer(account, reader):
    broadcast = _frozen(
        _broadcast(
            account,
            body=f"Hi {GREETING},\n\nRead [the recipe](https://example.com/soup).\n\n- Leek\n- Salt",
        )
    )

    text = _message(broadcast, reader, delivery_id=5).body

    token = unsubscribe_token(subscriber=reader)
    link = broadcast.links.get(url="https://example.com/soup")
    tracked = click_token(broadcast_id=broadcast.pk, delivery_id=5, link_id=link.pk)
    assert text == (
        f"Hi Rita,\n\nRead the recipe (https://t.mail.example.com/t/c/{tracked}).\n\n"
        "- Leek\n- Salt\n\n"
        f"--\nAnn's Kitchen\n1 Main Street\nSpringfield\n\n"
        f"Unsubscribe: https://mail.example.com/u/{token}/\n"
    )


# Per recipient -------------------------------------------------------------------------------


def test_subscriber_without_first_name_gets_the_default(account):
    nameless = SubscriberFactory(account=account, first_name="")
    broadcast = _frozen(_broadcast(account, subject=f"Hi {GREETING}", body=f"Dear {GREETING},"))

    message = _message(broadcast, nameless)

    assert message.subject == "Hi friend"
    assert message.body.startswith("Dear friend,")
    assert "Dear friend," in message.alternatives[0][0]


def test_custom_fields_are_filled_in_and_missing_ones_fall_back(account, reader):
    CustomFieldFactory(account=account, key="company")
    broadcast = _frozen(
        _broadcast(
            account,
            body=(
                "At {{ subscriber.company | default: 'your place' }} "
                "({{ subscriber.fields.company | default: '-' }})"
            ),
        )
    )
    reader.fields = {"company": "ACME & Sons"}
    other = SubscriberFactory(account=account, fields={})

    for_reader, for_other = _message(broadcast, reader), _message(broadcast, other)

    assert for_reader.body.startswith("At ACME & Sons (ACME & Sons)")
    assert "At ACME &amp; Sons (ACME &amp; Sons)" in for_reader.alternatives[0][0]
    assert for_other.body.startswith("At your place (-)")


def test_subscriber_data_is_escaped_in_the_html_part(account):
    sly = SubscriberFactory(account=account, first_name='<img src=x onerror="alert(1)">')
    broadcast = _frozen(_broadcast(account, body=f"Hi {GREETING}"))

    message = _message(broadcast, sly)

    assert "Hi &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in message.alternatives[0][0]
    assert 'Hi <img src=x onerror="alert(1)">' in message.body


def test_message_headers(account, reader):
    broadcast = _frozen(_broadcast(account, subject=f"Soup for {GREETING}"))
    token = unsubscribe_token(subscriber=reader)

    message = _message(broadcast, reader, delivery_id=41)
    parsed = _parsed(message)

    assert parsed["From"] == "Ann Example <ann@news.example.com>"
    assert parsed["To"] == "Rita <reader@example.org>"
    assert message.recipients() == ["Rita <reader@example.org>"]
    assert parsed["Subject"] == "Soup for Rita"
    delivery = Delivery(pk=41, broadcast=broadcast)
    assert parsed["Message-ID"] == delivery.message_id("mail.example.com")
    assert parsed["Message-ID"] == f"<d41.b{broadcast.pk}@mail.example.com>"
    assert parsed["List-Unsubscribe"].strip() == (
        f"<https://mail.example.com/u/{token}/>, <mailto:unsubscribe+{token}@mail.example.com>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Date"].datetime is not None
    text, html = _parts(parsed)
    assert f'<a href="https://mail.example.com/u/{token}/"' in html
    assert "1 Main Street<br>Springfield" in html


def test_account_without_sender_sends_from_the_default(account, reader, settings):
    settings.DEFAULT_FROM_EMAIL = "ConvertKit <noreply@mail.example.com>"
    account.sender_email = ""
    account.save()

    parsed = _parsed(_message(_frozen(_broadcast(account)), reader))

    assert parsed["From"] == "ConvertKit <noreply@mail.example.com>"


def test_suppressed_subscriber_gets_no_message(account):
    gone = SubscriberFactory(account=account, state=Subscriber.State.UNSUBSCRIBED)

    with pytest.raises(SubscriberNotMailable):
        _message(_frozen(_broadcast(account)), gone)


def test_mime_bytes_are_a_valid_message(account):
    zoe = SubscriberFactory(account=account, email="zoe@example.org", first_name="Zoë, Jr.")
    long_line = "word" * 400  # 1,600 characters without a break
    broadcast = _frozen(
        _broadcast(
            account,
            subject="Soupe à l'oignon pour {{ subscriber.first_name }} " + "très " * 20,
            preview_text="Crème brûlée",
            body=f"Déjà vu.\n\n{long_line}\n\nFin.",
        )
    )
    message = _message(broadcast, zoe)

    raw = _raw(message)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)

    assert raw.isascii()
    head = raw.split(b"\r\n\r\n", 1)[0]
    # Every header is 7-bit and folded: the subject as RFC 2047 encoded words.
    assert b"Subject: =?utf-8?b?" in head
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert [part.defects for part in parsed.walk()] == [[], [], []]
    # Written from the skeleton, not by Django's slower message().
    assert isinstance(message.message(policy=policy.SMTP), PrebuiltMessage)
    assert parsed["Subject"] == "Soupe à l'oignon pour Zoë, Jr. " + "très " * 19 + "très"
    assert parsed["To"].addresses[0].display_name == "Zoë, Jr."
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.org"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    text, html = _parts(parsed)
    assert text == message.body.rstrip("\n")
    assert html == message.alternatives[0][0].rstrip("\n")
    assert long_line in text and long_line in html
    assert "Déjà vu." in text and "Crème brûlée" in html


def test_message_from_the_skeleton_matches_djangos_own(account, reader):
    broadcast = _frozen(
        _broadcast(account, subject=f"Hé {GREETING}", preview_text="Soon", body="Ça va?")
    )
    message = _message(broadcast, reader)

    ours = _parsed(message)
    django_built = BytesParser(policy=policy.default).parsebytes(
        super(type(message), message).message(policy=policy.SMTP).as_bytes()
    )

    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe", "MIME-Version"):
        # (Both fold a long List-Unsubscribe right after its colon: a leading space.)
        assert ours[header].strip() == django_built[header].strip(), header
    assert _parts(ours) == _parts(django_built)


def test_prebuilt_message_can_be_read_like_any_message(account, reader):
    message = _message(_frozen(_broadcast(account, body="Ça va?")), reader).message()

    assert message.as_bytes().startswith(b"From: Ann Example")
    assert b"\r\n" not in message.as_bytes()
    assert message.as_bytes(policy=policy.SMTP).count(b"\r\n") > 10
    assert message.as_string().startswith("From: Ann Example")
    assert "Ça va?" in message.as_string()
    assert message["To"] == "Rita <reader@example.org>"
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    # Once opened, it is an ordinary message: changes show in its bytes.
    message.replace_header("Subject", "Changed")
    assert b"Subject: Changed" in message.as_bytes()


def test_message_changed_after_rendering_is_built_by_django(account, reader):
    message = _message(_frozen(_broadcast(account, body="Hello")), reader)
    message.attach("recipe.txt", "Leeks.", "text/plain")
    message.cc = ["chef@example.org"]

    parsed = _parsed(message)

    assert parsed["Cc"] == "chef@example.org"
    assert [part.get_filename() for part in parsed.iter_attachments()] == ["recipe.txt"]


@pytest.mark.parametrize(
    "sender_name",
    ["Ann\r\nBcc: victim@evil.example", "Ann\nBcc: victim@evil.example", "Ann\rBcc: x@y.z"],
)
def test_line_breaks_in_the_sender_name_cannot_add_a_header(account, reader, sender_name):
    account.sender_name = sender_name
    account.save()

    parsed = _parsed(_message(_frozen(_broadcast(account)), reader))

    assert parsed["Bcc"] is None
    assert parsed["From"].addresses[0].addr_spec == "ann@news.example.com"
    assert "\n" not in parsed["From"].addresses[0].display_name


@pytest.mark.parametrize(
    "subject, first_name",
    [
        ("Hi\r\nBcc: victim@evil.example", "Rita"),
        ("Hi {{ subscriber.first_name }}", "Rita\r\nBcc: victim@evil.example"),
        ("Hi {{ subscriber.first_name }}", "Rita\nX-Injected: yes"),
        ('Hi {{ "\\r\\nBcc: victim@evil.example" }}', "Rita"),
    ],
)
def test_line_breaks_in_the_subject_cannot_add_a_header(account, subject, first_name):
    sly = SubscriberFactory(account=account, first_name=first_name)
    broadcast = _frozen(_broadcast(account, subject=subject))

    message = _message(broadcast, sly)
    raw = _raw(message)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)

    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert message.recipients() == [message.to[0]]
    assert parsed["Subject"].startswith("Hi ")
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert re.findall(rb"^(?:Bcc|X-Injected):", raw, flags=re.MULTILINE) == []


def test_header_changed_to_hold_a_line_break_is_refused(account, reader):
    message = _message(_frozen(_broadcast(account)), reader)
    message.subject = "Hi\r\nBcc: victim@evil.example"

    with pytest.raises(ValueError, match="line break"):
        message.message()


def test_django_smtp_backend_delivers_the_bytes(account, reader, smtp_sink, settings):
    broadcast = _frozen(_broadcast(account, subject=f"Soup for {GREETING}", body="Hot *soup*."))
    message = _message(broadcast, reader, delivery_id=7)

    assert message.send() == 1

    (received,) = smtp_sink.messages
    assert smtp_sink.copies == {"reader@example.org": 1}
    assert received["Subject"] == "Soup for Rita"
    assert received["Message-ID"] == f"<d7.b{broadcast.pk}@mail.example.com>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = _parts(received)
    assert text.startswith("Hot soup.") and "<em>soup</em>" in html


def test_anymail_reads_the_message(account, reader):
    broadcast = _frozen(_broadcast(account, subject=f"Soup for {GREETING}", body="Hot soup."))
    message = _message(broadcast, reader, delivery_id=9)

    backend = "anymail.backends.test.EmailBackend"
    if django.VERSION >= (6, 1):
        mailers = {"MAILERS": {"default": {"BACKEND": backend}}}
    else:
        mailers = {"EMAIL_BACKEND": backend}
    with override_settings(**mailers):
        message.send()

    (sent,) = mail.outbox
    params = sent.anymail_test_params
    assert params["subject"] == "Soup for Rita"
    assert [to.address for to in params["to"]] == ["Rita <reader@example.org>"]
    assert params["extra_headers"]["Message-ID"] == f"<d9.b{broadcast.pk}@mail.example.com>"
    assert params["text_body"].startswith("Hot soup.")
    assert "Hot soup." in params["html_body"]


# The editor's preview ------------------------------------------------------------------------


def test_preview_is_sanitised(account):
    sly = SubscriberFactory(account=account, first_name="<script>alert('name')</script>")
    broadcast = _broadcast(
        account,
        body_format=Broadcast.BodyFormat.HTML,
        body=(
            "<p onclick='alert(1)'>Hi {{ subscriber.first_name }}</p><script>alert(2)</script>"
            '<img src="https://example.com/a.png" onerror="alert(3)">'
            '<a href="javascript:alert(4)">x</a><form action="https://evil.example"><input></form>'
            '<svg onload="alert(5)"></svg>'
        ),
    )

    shown = preview(broadcast, sly)

    assert shown.problems == []
    assert "<script" not in shown.html and "onerror" not in shown.html
    assert "onclick" not in shown.html and "onload" not in shown.html
    assert "javascript:" not in shown.html and "<form" not in shown.html
    assert "&lt;script&gt;alert('name')&lt;/script&gt;" in shown.html
    assert '<img src="https://example.com/a.png"' in shown.html


def test_preview_of_unsaved_values_uses_a_sample_subscriber(account):
    CustomFieldFactory(account=account, key="company")
    broadcast = _broadcast(account)
    broadcast.subject = f"Hi {GREETING}"
    broadcast.preview_text = "Five soups"
    broadcast.body = "At {{ subscriber.company | default: 'work' }}, [leave]({{ unsubscribe_url }})"

    shown = preview(broadcast)

    assert shown.subject == f"Hi {rendering.SAMPLE_FIRST_NAME}"
    assert re.search(r'<div style="display:none;[^"]*">Five soups', shown.html)
    test_url = f"https://mail.example.com/u/{unsubscribe_test_token(account=account)}/"
    assert f"At work, leave ({test_url})" in shown.text
    assert "Ann's Kitchen\n1 Main Street\nSpringfield" in shown.text
    broadcast.refresh_from_db()
    assert broadcast.subject == "Soup season"


def test_preview_with_problems_lists_them_and_shows_what_it_can(account, reader):
    broadcast = _broadcast(account, body="Hello {{ subscriber.first_name }}\n\n{{ coupon }}")

    shown = preview(broadcast, reader)

    assert [(problem.part, problem.line) for problem in shown.problems] == [("body", 3)]
    assert "Hello Rita" in shown.html and "Hello Rita" in shown.text


def test_test_copy_goes_to_the_creator(account, reader):
    broadcast = _broadcast(account, subject=f"Soup for {GREETING}", body="Hot soup.")

    message = rendering.test_message_build(broadcast=broadcast, to_email="ann@example.com")

    assert message.to == ["ann@example.com"]
    assert message.subject == f"[Test] Soup for {rendering.SAMPLE_FIRST_NAME}"
    assert message.body.startswith("Hot soup.")
    assert "Hot soup." in message.alternatives[0][0]


def test_test_copy_of_a_broken_template_is_refused(account):
    broadcast = _broadcast(account, body="{{ coupon }}")

    with pytest.raises(RenderFailed, match="coupon"):
        rendering.test_message_build(broadcast=broadcast, to_email="ann@example.com")
