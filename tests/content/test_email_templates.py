"""Email templates: the built-in designs laid out for Outlook and dark modes, a creator's own
design settings and HTML (checked, sanitised, the law's footer always there), chosen per
broadcast and per sequence email and frozen with the email, the pages, tenancy, and deleting a
template in use."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from broadcasts.models import Broadcast
from broadcasts.rendering import frozen_parts
from broadcasts.rendering.html import email_document
from content.email_templates import services
from content.email_templates.builtins import BUILTINS
from content.email_templates.designs import Design
from content.models import EmailTemplate
from sequences.models import SequenceEmail
from tests.broadcasts.test_views import page_inputs
from tests.sequences.conftest import email_add

HTMX = {"HTTP_HX_REQUEST": "true"}
SAMPLE = '<p>Hello <a href="https://example.com/soup">soup</a></p>'
CUSTOM = (
    "<style>.hero { color: #aa0000; position: fixed }</style>"
    '<div class="hero">Hi from {{ account.name }}</div>'
    '<table width="600"><tr><td>{{ message_content }}</td></tr></table>'
)


def _document(account, design: Design, **extra) -> str:
    return email_document(
        account=account,
        design=design,
        body_html=SAMPLE,
        preheader_html="Soup season",
        unsubscribe_url="https://mail.example.com/u/test/",
        **extra,
    )


def _template(account, **fields) -> EmailTemplate:
    return EmailTemplate.objects.create(account=account, name=fields.pop("name", "Mine"), **fields)


def _broadcast(account, **fields) -> Broadcast:
    return Broadcast.objects.create(
        account=account, subject="Soup", body="Hello **soup**.", **fields
    )


# --- The built-ins ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(BUILTINS))
def test_each_builtin_lays_out_a_sample_email_as_outlook_and_dark_modes_need(account_a, key):
    design = BUILTINS[key].design

    html = _document(account_a, design)

    assert html.startswith("<!DOCTYPE html>")
    assert '<meta name="color-scheme" content="light">' in html
    assert '<table class="email-container" role="presentation"' in html
    assert f'width="{design.content_width}"' in html
    assert "flex" not in html and "grid" not in html
    # Styles are inline, with explicit backgrounds: the body cell carries its colours.
    body_cell = re.search(r'<td class="email-body"[^>]*>', html)[0]
    assert f'bgcolor="{design.content_color}"' in body_cell
    assert f"background-color: {design.content_color}" in body_cell
    assert f"color: {design.text_color}" in body_cell
    assert re.search(
        rf'<a href="https://example.com/soup" style="color: {design.link_color};"', html
    )
    # The footer the law requires: name, postal address, unsubscribe link.
    assert "Ann&#x27;s Kitchen" in html or "Ann's Kitchen" in html
    assert account_a.postal_address in html
    assert '<a href="https://mail.example.com/u/test/"' in html and "Unsubscribe" in html


def test_the_builtins_look_different(account_a):
    modern = _document(account_a, BUILTINS["modern"].design)
    plain = _document(account_a, BUILTINS["plain"].design)

    assert '<td class="email-header"' in modern and "font-weight: 800" in modern
    body = plain.split("<body")[1]
    assert '<td class="email-header"' not in body and "border-radius" not in body


def test_view_in_browser_shows_at_the_top_only_when_given_and_the_design_shows_it(account_a):
    classic = _document(account_a, BUILTINS["classic"].design, web_view_url="https://w.example/1")
    without = _document(account_a, BUILTINS["classic"].design)
    plain = _document(account_a, BUILTINS["plain"].design, web_view_url="https://w.example/1")

    assert '<a href="https://w.example/1"' in classic and "View in browser" in classic
    assert classic.index("View in browser") < classic.index("Hello")
    assert "View in browser" not in without and "View in browser" not in plain


def test_a_dark_design_says_so_in_its_color_scheme(account_a):
    dark = Design(background_color="#000000", content_color="#111111", text_color="#eeeeee")

    html = _document(account_a, dark)

    assert '<meta name="color-scheme" content="dark">' in html


def test_the_footer_is_written_in_the_designs_muted_colour(account_a):
    dark = Design(background_color="#000000", content_color="#111111", muted_color="#bbbbbb")

    footer = _document(account_a, dark).split('class="footer"')[1]

    assert "color:#bbbbbb" in footer.split(">")[0] and "#666" not in footer


# --- Checked values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("background_color", "red;}</style><script>alert(1)</script>"),
        ("link_color", "#12345"),
        ("text_color", "expression(alert(1))"),
        ("font", "Arial; } body { display:none"),
        ("content_width", 10_000),
        ("header_image_url", "javascript:alert(1)"),
        ("header_text", "{{ subscriber.email }}"),
    ],
)
def test_hostile_design_values_are_refused_with_a_clear_error_and_nothing_saved(
    alice_client, account_a, field, value
):
    template = services.email_template_create(account=account_a, name="Mine", start="classic")
    edit = reverse("email_template_edit", args=[template.id])
    data = {**page_inputs(alice_client.get(edit), "template-form"), field: value}

    response = alice_client.post(edit, data)

    assert response.status_code == 400
    assert "Nothing was saved" in response.content.decode()
    template.refresh_from_db()
    assert template.settings == services.design_settings_check({}, base=BUILTINS["classic"].design)
    with pytest.raises(ValueError):
        Design(**{field: value})


def test_a_template_row_holding_a_bad_value_renders_as_classic(account_a):
    template = _template(account_a, settings={"background_color": "red;}</style>"})
    broadcast = _broadcast(account_a, email_template=template.key)

    html = frozen_parts(broadcast).html

    assert "</style>" not in html.split("<body")[1] and "red;}" not in html
    assert 'bgcolor="#f4f4f5"' in html


# --- Custom HTML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<p>No content here</p>", "exactly once"),
        ("<p>{{ message_content }}</p><p>{{ message_content }}</p>", "exactly once"),
        ("<p>{{ message_content }} {{ subscriber.email }}</p>", "cannot be used in a template"),
        ("<p>{{ message_content }}</p>{% if x %}{% endif %}", "cannot be used in a template"),
        ('<a title="{{ message_content }}">x</a>', "between tags"),
    ],
)
def test_custom_html_without_exactly_one_message_content_is_refused(
    account_a, alice_client, html, error
):
    template = services.email_template_create(account=account_a, name="Code", start="html")
    saved = template.html
    edit = reverse("email_template_edit", args=[template.id])

    response = alice_client.post(edit, {"name": "Code", "html": html})

    assert response.status_code == 400 and error in response.content.decode()
    template.refresh_from_db()
    assert template.html == saved


def test_custom_html_is_sanitised_and_its_css_applied_to_it_alone(account_a):
    design = Design(custom_html=CUSTOM + '<script>alert(1)</script><img src=x onerror="alert(2)">')

    html = _document(account_a, design)

    assert "<script" not in html and "alert(" not in html and "onerror" not in html
    assert '<div style="color:#aa0000">Hi from Ann' in html  # position: fixed is dropped
    assert "position" not in html
    assert '<td><p>Hello <a href="https://example.com/soup"' in html


def test_custom_html_without_the_unsubscribe_link_gets_the_standard_footer(account_a):
    html = _document(account_a, Design(custom_html=CUSTOM))

    assert '<td class="email-footer"' in html
    assert '<a href="https://mail.example.com/u/test/"' in html
    assert account_a.postal_address in html


def test_custom_html_with_its_own_unsubscribe_link_and_address_has_no_second_footer(account_a):
    own = CUSTOM + '<p>{{ account.postal_address }} <a href="{{ unsubscribe_url }}">Leave</a></p>'

    html = _document(account_a, Design(custom_html=own))

    assert "email-footer" not in html
    assert '<a href="https://mail.example.com/u/test/" rel="noopener noreferrer">Leave</a>' in html
    assert html.count(account_a.postal_address) == 1


def test_message_content_inside_a_tag_is_refused(account_a):
    from broadcasts.rendering import RenderFailed

    with pytest.raises(RenderFailed, match="between tags"):
        _document(account_a, Design(custom_html='<a title="{{ message_content }}">x</a>'))


# --- Chosen per email, frozen with it ----------------------------------------------------------


def test_a_broadcast_sends_in_its_chosen_template(account_a):
    mine = _template(account_a, settings={"background_color": "#123456"})
    modern = _broadcast(account_a, email_template="modern")
    own = _broadcast(account_a, email_template=mine.key)
    classic = _broadcast(account_a)

    assert 'class="email-header"' in frozen_parts(modern).html
    assert 'bgcolor="#123456"' in frozen_parts(own).html
    assert 'bgcolor="#f4f4f5"' in frozen_parts(classic).html
    # The frozen HTML is still a Liquid template: the unsubscribe link resolves per recipient.
    assert '<a href="{{ unsubscribe_url }}"' in frozen_parts(own).html


def test_another_accounts_template_renders_as_classic(account_a, account_b):
    theirs = _template(account_b, settings={"background_color": "#123456"})
    broadcast = _broadcast(account_a, email_template=theirs.key)

    assert "#123456" not in frozen_parts(broadcast).html


def test_the_editor_offers_the_builtins_and_the_accounts_templates_and_saves_the_choice(
    alice_client, account_a, account_b
):
    mine = _template(account_a, name="Autumn look")
    _template(account_b, name="Charlie's look")
    broadcast = _broadcast(account_a)
    edit = reverse("broadcast_edit", args=[broadcast.id])

    page = alice_client.get(edit).content.decode()
    data = {**page_inputs(alice_client.get(edit), "broadcast-form"), "email_template": mine.key}
    response = alice_client.post(edit, data)

    assert "Modern" in page and "Plain" in page and "Autumn look" in page
    assert "Charlie&#x27;s look" not in page and "Charlie's look" not in page
    assert response.status_code == 302
    broadcast.refresh_from_db()
    assert broadcast.email_template == mine.key


def test_the_live_preview_shows_the_chosen_template(alice_client, account_a):
    broadcast = _broadcast(account_a)
    edit = reverse("broadcast_edit", args=[broadcast.id])
    data = {**page_inputs(alice_client.get(edit), "broadcast-form"), "email_template": "modern"}

    preview = alice_client.post(reverse("broadcast_preview", args=[broadcast.id]), data, **HTMX)

    assert "email-header" in preview.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.email_template == "classic"


def test_a_broadcast_form_naming_another_accounts_template_is_refused(
    alice_client, account_a, account_b
):
    theirs = _template(account_b)
    broadcast = _broadcast(account_a)
    edit = reverse("broadcast_edit", args=[broadcast.id])
    data = {
        **page_inputs(alice_client.get(edit), "broadcast-form"),
        "email_template": theirs.key,
        "subject": "Changed",
    }

    response = alice_client.post(edit, data)

    assert response.status_code == 400
    assert "Choose one of your templates" in response.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.email_template == "classic" and broadcast.subject == "Soup"


def test_a_sequence_email_is_frozen_in_its_chosen_template(alice_client, make_sequence, account_a):
    sequence = make_sequence(account=account_a, emails=[("One", 0, "days")])
    email = SequenceEmail.objects.get(sequence=sequence)
    edit = reverse("sequence_email_edit", args=[sequence.id, email.id])
    data = {**page_inputs(alice_client.get(edit), "email-form"), "email_template": "modern"}

    response = alice_client.post(edit, data)

    assert response.status_code == 302
    email.message.refresh_from_db()
    assert email.message.email_template == "modern"
    assert 'class="email-header"' in email.message.frozen_html


def test_a_live_sequence_email_sends_its_edited_template_from_its_next_copy(
    account_a, make_sequence
):
    mine = services.email_template_create(account=account_a, name="Mine", start="classic")
    sequence = make_sequence(account=account_a, emails=[("One", 0, "days"), ("Two", 1, "days")])
    one, two = (email.message for email in SequenceEmail.objects.filter(sequence=sequence))
    Broadcast.objects.filter(pk=one.pk).update(email_template=mine.key)
    one.refresh_from_db()
    services.email_template_update(template=mine, name="Mine", settings=mine.settings)
    untouched = Broadcast.objects.get(pk=two.pk).frozen_html
    assert "#7c2d12" not in Broadcast.objects.get(pk=one.pk).frozen_html

    settings = {**mine.settings, "background_color": "#7c2d12"}
    services.email_template_update(template=mine, name="Mine", settings=settings)

    assert 'bgcolor="#7c2d12"' in Broadcast.objects.get(pk=one.pk).frozen_html
    assert Broadcast.objects.get(pk=two.pk).frozen_html == untouched


def test_new_emails_start_with_the_accounts_default(alice_client, account_a, make_sequence):
    mine = _template(account_a)
    response = alice_client.post(reverse("email_template_default"), {"key": mine.key})
    assert response.status_code == 302

    account_a.refresh_from_db()
    alice_client.post(reverse("broadcast_create"))
    sequence = make_sequence(account=account_a)
    email = email_add(sequence, subject="Next", delay=1, unit="days", publish=False)

    assert account_a.default_email_template == mine.key
    assert Broadcast.objects.broadcasts().get(account=account_a).email_template == mine.key
    assert email.message.email_template == mine.key


def test_a_default_of_another_account_is_refused(alice_client, account_a, account_b):
    theirs = _template(account_b)

    alice_client.post(reverse("email_template_default"), {"key": theirs.key})

    account_a.refresh_from_db()
    assert account_a.default_email_template == "classic"


# --- Deleting ---------------------------------------------------------------------------------


def test_a_template_used_by_a_draft_or_a_sequence_email_cannot_be_deleted(
    alice_client, account_a, make_sequence
):
    mine = _template(account_a, name="Autumn")
    _broadcast(account_a, email_template=mine.key)
    delete = reverse("email_template_delete", args=[mine.id])

    response = alice_client.post(delete, follow=True)

    assert "is used by 1 draft or scheduled broadcast" in response.content.decode()
    assert EmailTemplate.objects.filter(pk=mine.pk).exists()

    Broadcast.objects.filter(account=account_a).delete()
    sequence = make_sequence(account=account_a, emails=[("One", 0, "days")])
    Broadcast.objects.filter(sequence_email__sequence=sequence).update(email_template=mine.key)
    with pytest.raises(services.EmailTemplateInUse, match="1 sequence email"):
        services.email_template_delete(template=mine)


def test_deleting_a_template_leaves_sent_emails_as_sent_and_the_default_back_to_classic(
    alice_client, account_a
):
    mine = _template(account_a)
    sent = _broadcast(account_a, email_template=mine.key)
    sent.frozen_html = frozen_parts(sent).html
    Broadcast.objects.filter(pk=sent.pk).update(state="sent", frozen_html=sent.frozen_html)
    services.email_template_default_set(account=account_a, key=mine.key)

    response = alice_client.post(reverse("email_template_delete", args=[mine.id]))

    assert response.status_code == 302
    assert not EmailTemplate.objects.filter(pk=mine.pk).exists()
    sent_after = Broadcast.objects.get(pk=sent.pk)
    assert sent_after.frozen_html == sent.frozen_html and sent_after.email_template == "classic"
    account_a.refresh_from_db()
    assert account_a.default_email_template == "classic"


# --- Pages and tenancy ------------------------------------------------------------------------


def test_the_list_shows_builtins_and_own_templates_each_with_a_preview(alice_client, account_a):
    _template(account_a, name="Autumn look")

    page = alice_client.get(reverse("email_template_list")).content.decode()

    for name in ("Classic", "Modern", "Plain", "Autumn look"):
        assert name in page
    assert page.count('class="template-thumb-frame"') == 4
    assert 'href="/templates/"' in page  # in the main navigation


def test_a_new_template_from_a_builtin_opens_its_editor_with_a_live_preview(
    alice_client, account_a
):
    response = alice_client.post(
        reverse("email_template_create"), {"name": "Mine", "start": "modern"}
    )
    template = EmailTemplate.objects.get(account=account_a)
    edit = reverse("email_template_edit", args=[template.id])
    data = {**page_inputs(alice_client.get(edit), "template-form"), "header_color": "#ff8800"}

    preview = alice_client.post(reverse("email_template_preview", args=[template.id]), data, **HTMX)
    saved = alice_client.post(edit, data)

    assert response.status_code == 302 and response.url == edit
    assert template.settings["header"] == "text"
    assert "#ff8800" in preview.content.decode()
    assert saved.status_code == 302
    template.refresh_from_db()
    assert template.settings["header_color"] == "#ff8800"


def test_a_new_html_template_starts_with_every_required_part(alice_client, account_a):
    alice_client.post(reverse("email_template_create"), {"name": "Code", "start": "html"})
    template = EmailTemplate.objects.get(account=account_a)

    page = alice_client.get(reverse("email_template_edit", args=[template.id]))

    assert template.mode == "html" and "{{ message_content }}" in template.html
    assert page.status_code == 200 and "Unsubscribe" in page.content.decode()


def test_another_accounts_template_is_a_404_on_every_url_and_nothing_changes(
    charlie_client, account_a
):
    mine = _template(account_a, name="Autumn")
    for name, method in (
        ("email_template_edit", "get"),
        ("email_template_edit", "post"),
        ("email_template_preview", "post"),
        ("email_template_delete", "post"),
    ):
        response = getattr(charlie_client, method)(reverse(name, args=[mine.id]), {"name": "Taken"})
        assert response.status_code == 404, name
    mine.refresh_from_db()
    assert mine.name == "Autumn"
    assert charlie_client.get(reverse("email_template_list")).content.decode().count("Autumn") == 0
