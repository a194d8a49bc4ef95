"""The form builder: create, edit every section and save, the live preview that never saves,
bad input refused without losing what is stored, the incentive file, archive, and tenancy.

Posts start from what the builder page itself renders (its inputs, as a browser would send them),
with the changes a test makes."""

from __future__ import annotations

from html import unescape
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, reverse
from django.utils.html import escape

from subscribers.models import CustomField, Form, FormIncentiveFile, FormWording, Tag
from subscribers.signup_forms import urls as form_urls
from subscribers.signup_forms.embed import form_embed_code, form_hosted_url
from subscribers.signup_forms.services import (
    MAX_INCENTIVE_FILE_BYTES,
    form_create,
    form_incentive_file_set,
    form_update,
)
from tests.factories import CustomFieldFactory, TagFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


class _BuilderInputs(HTMLParser):
    """The name/value pairs a browser submits from the page's <form id="builder-form">."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.inside = False
        self.values: dict[str, str] = {}
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "builder-form":
            self.inside = True
        if not self.inside or "disabled" in attrs or not attrs.get("name"):
            return
        if tag == "input":
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind not in ("file", "submit"):
                default = "on" if kind in ("checkbox", "radio") else ""
                self.values[attrs["name"]] = attrs.get("value", default)
        elif tag == "textarea":
            self.textarea = attrs["name"]
            self.values[self.textarea] = ""

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self.textarea:
            # HTML drops the newline after <textarea>; browsers send line breaks as CRLF.
            value = self.values[self.textarea].removeprefix("\n")
            self.values[self.textarea] = value.replace("\n", "\r\n")
            self.textarea = None
        elif tag == "form":
            self.inside = False


def page_inputs(response) -> dict[str, str]:
    parser = _BuilderInputs()
    parser.feed(response.content.decode())
    return parser.values


def builder_url(form: Form) -> str:
    return reverse("form_builder", args=[form.id])


def preview_url(form: Form) -> str:
    return reverse("form_preview", args=[form.id])


def row_index(data: dict, key: str) -> int:
    return next(
        int(name.split("-")[1])
        for name, value in data.items()
        if name.startswith("fields-") and name.endswith("-key") and value == key
    )


def tick_field(data: dict, key: str, *, label: str = "", required: bool = False, position=None):
    index = row_index(data, key)
    data[f"fields-{index}-shown"] = "on"
    data[f"fields-{index}-label"] = label or data[f"fields-{index}-label"]
    if required:
        data[f"fields-{index}-required"] = "on"
    if position is not None:
        data[f"fields-{index}-position"] = str(position)


def stored(form: Form) -> dict:
    """Everything about the form a builder submit could change."""
    form.refresh_from_db()
    return {
        **{field.attname: getattr(form, field.attname) for field in Form._meta.concrete_fields},
        "tags": sorted(form.tags.values_list("name", flat=True)),
        "wordings": FormWording.objects.filter(form=form).count(),
        "incentive_file": list(FormIncentiveFile.objects.filter(form=form).values("name", "size")),
        "all_tags": sorted(Tag.objects.values_list("name", flat=True)),
    }


@pytest.fixture
def form_a(account_a):
    return form_create(account=account_a, name="Homepage")


@pytest.fixture
def page_data(alice_client, form_a):
    return page_inputs(alice_client.get(builder_url(form_a)))


# --- Create -----------------------------------------------------------------------------------


def test_creating_a_form_opens_its_builder(alice_client, account_a):
    response = alice_client.post(reverse("form_create"), {"name": "Sidebar", "style": "slidein"})
    form = Form.objects.get(account=account_a)
    assert response.status_code == 302
    assert response["Location"] == builder_url(form)
    assert (form.name, form.style) == ("Sidebar", Form.Style.SLIDEIN)
    assert [field["key"] for field in form.fields] == ["email"]
    assert "Sidebar" in alice_client.get(response["Location"]).content.decode()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "This field is required."),
        ("Home\r\nBcc: x@example.com", "must be on one line"),
        ("x" * 101, "at most 100 characters"),
    ],
)
def test_a_form_needs_a_short_one_line_name(alice_client, account_a, name, error):
    response = alice_client.post(reverse("form_create"), {"name": name, "style": "inline"})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Form.objects.exists()


# --- The builder page -------------------------------------------------------------------------


def test_the_builder_shows_every_section_the_hosted_page_and_the_embed_code(
    alice_client, form_a, account_a
):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    body = alice_client.get(builder_url(form_a)).content.decode()
    for heading in (
        "Fields",
        "Content",
        "Style",
        "After signup",
        "Tags applied on subscribe",
        "Double opt-in",
        "Incentive",
        "Embed",
        "Preview",
    ):
        assert f">{heading}</h2>" in body
    assert "Company" in body  # a custom field the form may ask for
    assert f'href="{form_hosted_url(form_a)}"' in body
    assert f'readonly aria-describedby="embed-code-help">{escape(form_embed_code(form_a))}' in (
        body
    )
    assert "Copy embed code" in body


def test_saving_applies_every_section(alice_client, form_a, account_a, page_data):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    TagFactory(account=account_a, name="vip")
    data = page_inputs(alice_client.get(builder_url(form_a)))
    tick_field(data, "first_name", label="Your first name", required=True, position=9)
    tick_field(data, "company", position=5)
    data.update(
        name="Homepage (2025)",
        headline="Get the weekly recipe",
        description="One recipe a week.\r\nNo spam.",
        button_text="Send me recipes",
        consent_text="Unsubscribe any time.",
        style="modal",
        success_action="redirect",
        redirect_url="https://example.com/thanks",
        tag_names="VIP, recipes,  recipes ",
        confirmation_subject="Confirm, {{ first_name }}",
        confirmation_body="Hello!\r\n{{ confirmation_url }}",
        incentive_url="https://example.com/guide.pdf",
        incentive_subject="Your guide",
        incentive_body="Here: {{ incentive_url }}",
    )
    del data["double_opt_in"]

    response = alice_client.post(builder_url(form_a), data)

    assert response.status_code == 302
    assert response["Location"] == builder_url(form_a)
    form_a.refresh_from_db()
    assert form_a.fields == [
        {"key": "email", "label": "Email address", "required": True},
        {"key": "company", "label": "Company", "required": False},
        {"key": "first_name", "label": "Your first name", "required": True},
    ]
    assert form_a.name == "Homepage (2025)"
    assert form_a.headline == "Get the weekly recipe"
    assert form_a.description == "One recipe a week.\nNo spam."
    assert (form_a.button_text, form_a.consent_text) == ("Send me recipes", "Unsubscribe any time.")
    assert form_a.style == Form.Style.MODAL
    assert form_a.success_action == Form.SuccessAction.REDIRECT
    assert form_a.redirect_url == "https://example.com/thanks"
    assert sorted(form_a.tags.values_list("name", flat=True)) == ["recipes", "vip"]
    assert form_a.double_opt_in is False
    assert form_a.confirmation_subject == "Confirm, {{ first_name }}"
    assert form_a.confirmation_body == "Hello!\n{{ confirmation_url }}"
    assert form_a.incentive_url == "https://example.com/guide.pdf"
    assert (form_a.incentive_subject, form_a.incentive_body) == (
        "Your guide",
        "Here: {{ incentive_url }}",
    )
    # The words subscribers agree to changed: a new wording version records them.
    assert form_a.wording_version == 2
    assert FormWording.objects.get(form=form_a, version=2).headline == "Get the weekly recipe"
    assert "Form saved." in alice_client.get(builder_url(form_a)).content.decode()


def test_saving_without_changes_keeps_the_wording_version(alice_client, form_a):
    form_update(form=form_a, values={"description": "Line one\nLine two"})
    form_a.refresh_from_db()
    before = stored(form_a)
    data = page_inputs(alice_client.get(builder_url(form_a)))
    assert data["description"] == "Line one\r\nLine two"  # as a browser sends it

    response = alice_client.post(builder_url(form_a), data)

    assert response.status_code == 302
    after = stored(form_a)
    assert after["wording_version"] == before["wording_version"] == 2
    assert after["description"] == "Line one\nLine two"
    assert after["fields"] == before["fields"]


def test_a_field_unticked_leaves_the_form(alice_client, form_a):
    form_update(form=form_a, values={}, fields=[{"key": "email"}, {"key": "first_name"}])
    data = page_inputs(alice_client.get(builder_url(form_a)))
    del data[f"fields-{row_index(data, 'first_name')}-shown"]
    alice_client.post(builder_url(form_a), data)
    form_a.refresh_from_db()
    assert [field["key"] for field in form_a.fields] == ["email"]


# --- Bad input: refused with an inline error, nothing stored changes ---------------------------

BAD_CHANGES = [
    pytest.param(
        {"confirmation_subject": "Confirm\r\nBcc: victim@example.com"},
        "must be on one line",
        id="crlf-in-confirmation-subject",
    ),
    pytest.param(
        {"incentive_subject": "Guide\nX-Header: 1"}, "must be on one line", id="lf-in-subject"
    ),
    pytest.param({"headline": "x" * 201}, "at most 200 characters", id="long-headline"),
    pytest.param({"description": "x" * 2001}, "at most 2000 characters", id="long-description"),
    pytest.param({"button_text": ""}, "This field is required.", id="no-button-text"),
    pytest.param(
        {"success_action": "redirect", "redirect_url": "javascript:alert(1)"},
        "starting with http:// or https://",
        id="javascript-redirect",
    ),
    pytest.param(
        {"success_action": "redirect", "redirect_url": "ftp://example.com/file"},
        "starting with http:// or https://",
        id="ftp-redirect",
    ),
    pytest.param(
        {"success_action": "redirect", "redirect_url": ""},
        "Enter the address to send new subscribers to.",
        id="redirect-without-url",
    ),
    pytest.param(
        {"incentive_url": "data:text/html,<script>alert(1)</script>"},
        "starting with http:// or https://",
        id="data-incentive-url",
    ),
    pytest.param(
        {"confirmation_body": "Please confirm: {{ confirmation_link }}"},
        "Put {{ confirmation_url }} in the body",
        id="confirmation-body-without-link",
    ),
    pytest.param({"tag_names": "ok, " + "t" * 101}, "is too long", id="long-tag"),
    pytest.param({"style": "fullscreen"}, "Select a valid choice", id="unknown-style"),
    pytest.param(
        {"fields-1-key": "salary", "fields-1-shown": "on"},
        "The account has no field “salary”",
        id="unknown-custom-field",
    ),
    pytest.param({"fields-0-position": "zero"}, "Enter a whole number.", id="bad-position"),
    pytest.param({"fields-TOTAL_FORMS": "5000"}, "Please submit at most", id="too-many-rows"),
]


@pytest.mark.parametrize(("changes", "error"), BAD_CHANGES)
def test_bad_input_is_refused_inline_and_nothing_stored_changes(
    alice_client, form_a, page_data, changes, error
):
    before = stored(form_a)
    data = {**page_data, "name": "Renamed", "headline": "A headline typed with the mistake"}
    data.update(changes)

    response = alice_client.post(builder_url(form_a), data)

    assert response.status_code == 400
    body = unescape(response.content.decode())
    assert error in body
    assert "Nothing was saved." in body
    assert stored(form_a) == before
    assert ">Homepage</h1>" in body  # the page still names the saved form
    if "headline" not in changes:
        # What was typed is shown again, not lost.
        assert 'value="A headline typed with the mistake"' in body
        assert 'value="Renamed"' in body


def test_a_deleted_custom_field_must_be_unticked_before_saving(alice_client, form_a, account_a):
    company = CustomFieldFactory(account=account_a, key="company", label="Company")
    form_update(form=form_a, values={}, fields=[{"key": "email"}, {"key": "company"}])
    company.delete()
    before = stored(form_a)
    page = alice_client.get(builder_url(form_a))
    assert "This field no longer exists." in page.content.decode()
    data = page_inputs(page)

    refused = alice_client.post(builder_url(form_a), data)
    assert refused.status_code == 400
    assert "The account has no field “company”" in unescape(refused.content.decode())
    assert stored(form_a) == before

    del data[f"fields-{row_index(data, 'company')}-shown"]
    assert alice_client.post(builder_url(form_a), data).status_code == 302
    form_a.refresh_from_db()
    assert [field["key"] for field in form_a.fields] == ["email"]
    assert not CustomField.objects.exists()


# --- Incentive file ---------------------------------------------------------------------------


def test_an_uploaded_incentive_is_stored_downloadable_by_the_creator_and_removable(
    alice_client, form_a, page_data
):
    pdf = b"%PDF-1.4 a tiny guide"
    upload = SimpleUploadedFile("Guide 2025.pdf", pdf, content_type="application/pdf")
    response = alice_client.post(builder_url(form_a), {**page_data, "incentive_file": upload})
    assert response.status_code == 302
    stored_file = FormIncentiveFile.objects.get(form=form_a)
    assert (stored_file.name, stored_file.size, stored_file.content_type) == (
        "Guide 2025.pdf",
        len(pdf),
        "application/pdf",
    )

    page = alice_client.get(builder_url(form_a))
    assert "Guide 2025.pdf" in page.content.decode()
    download = alice_client.get(reverse("form_incentive_file", args=[form_a.id]))
    assert b"".join(download.streaming_content) == pdf
    assert download["Content-Disposition"].startswith("attachment;")

    data = {**page_inputs(page), "incentive_file_remove": "on"}
    assert alice_client.post(builder_url(form_a), data).status_code == 302
    assert not FormIncentiveFile.objects.filter(form=form_a).exists()


@pytest.mark.parametrize(
    ("size", "error"),
    [
        (MAX_INCENTIVE_FILE_BYTES + 1, "an incentive file can be at most 20.0\xa0MB"),
        (0, "The submitted file is empty."),
    ],
)
def test_an_incentive_file_too_large_or_empty_is_refused(
    alice_client, form_a, page_data, size, error
):
    before = stored(form_a)
    upload = SimpleUploadedFile("guide.pdf", b"x" * size, content_type="application/pdf")
    data = {**page_data, "headline": "Typed", "incentive_file": upload}
    response = alice_client.post(builder_url(form_a), data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert stored(form_a) == before


def test_an_incentive_is_a_link_or_a_file_not_both(alice_client, form_a):
    form_incentive_file_set(form=form_a, name="guide.pdf", content_type="", data=b"%PDF")
    before = stored(form_a)
    data = page_inputs(alice_client.get(builder_url(form_a)))
    data["incentive_url"] = "https://example.com/other.pdf"
    response = alice_client.post(builder_url(form_a), data)
    assert response.status_code == 400
    assert "Give either a link or a file, not both" in response.content.decode()
    assert stored(form_a) == before

    data["incentive_file_remove"] = "on"
    assert alice_client.post(builder_url(form_a), data).status_code == 302
    form_a.refresh_from_db()
    assert form_a.incentive_url == "https://example.com/other.pdf"
    assert not FormIncentiveFile.objects.filter(form=form_a).exists()


# --- Live preview -----------------------------------------------------------------------------


def test_the_preview_shows_unsaved_values_and_never_saves(alice_client, form_a, page_data):
    before = stored(form_a)
    data = {
        **page_data,
        "headline": "Unsaved headline",
        "button_text": "Join now",
        "tag_names": "brand-new-tag",
        "confirmation_subject": "Confirm please, {{ first_name }}",
    }
    tick_field(data, "first_name", label="Your name")

    response = alice_client.post(preview_url(form_a), data, **HTMX)

    assert response.status_code == 200
    body = response.content.decode()
    assert "<h2>Unsaved headline</h2>" in body
    assert ">Join now</button>" in body
    assert ">Your name</label>" in body
    assert "view.gif" not in body  # a preview is not a view
    assert "<html" not in body  # only the preview pane, for htmx
    assert 'id="confirmation-preview" hx-swap-oob="innerHTML"' in body
    assert "Confirm please, Sam" in body
    assert "/f/confirm/sample/" in body
    assert stored(form_a) == before


def test_the_preview_keeps_the_saved_value_of_an_invalid_field_and_says_so(
    alice_client, form_a, page_data
):
    data = {**page_data, "headline": "x" * 201, "button_text": "Go"}
    body = alice_client.post(preview_url(form_a), data, **HTMX).content.decode()
    assert "Shown as saved until fixed: Headline." in body
    assert ">Go</button>" in body


def test_without_javascript_the_preview_button_shows_the_whole_builder_unsaved(
    alice_client, form_a, page_data
):
    before = stored(form_a)
    response = alice_client.post(preview_url(form_a), {**page_data, "headline": "Draft"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "They are not saved yet." in body
    assert 'value="Draft"' in body
    assert "<h2>Draft</h2>" in body
    assert stored(form_a) == before


def test_the_incentive_email_preview_appears_once_there_is_an_incentive(
    alice_client, form_a, page_data
):
    without = alice_client.post(preview_url(form_a), page_data, **HTMX).content.decode()
    assert "No incentive yet" in without
    data = {**page_data, "incentive_url": "https://example.com/guide.pdf"}
    body = alice_client.post(preview_url(form_a), data, **HTMX).content.decode()
    assert "Here is your download" in body
    assert "https://example.com/guide.pdf" in body


# --- Archive ----------------------------------------------------------------------------------


def test_archiving_asks_first_then_takes_the_form_off_the_list_and_the_builder(
    alice_client, form_a
):
    confirm = alice_client.get(reverse("form_archive", args=[form_a.id]))
    assert "Archive the form “Homepage”?" in confirm.content.decode()
    form_a.refresh_from_db()
    assert form_a.archived_at is None

    response = alice_client.post(reverse("form_archive", args=[form_a.id]))
    assert response["Location"] == reverse("form_list")
    form_a.refresh_from_db()
    assert form_a.archived_at is not None
    assert ">Homepage</a>" not in alice_client.get(reverse("form_list")).content.decode()
    assert alice_client.get(builder_url(form_a)).status_code == 404
    assert alice_client.post(preview_url(form_a), {}, **HTMX).status_code == 404
    assert alice_client.post(reverse("form_archive", args=[form_a.id])).status_code == 404


# --- Tenancy ----------------------------------------------------------------------------------


def requests_for(form: Form, data: dict) -> dict[str, tuple[str, dict]]:
    """Every form view that takes an id: its URL and a POST that would change something."""
    return {
        "form_builder": (builder_url(form), {**data, "name": "Stolen", "tag_names": "pwned"}),
        "form_preview": (preview_url(form), data),
        "form_incentive_file": (reverse("form_incentive_file", args=[form.id]), {}),
        "form_archive": (reverse("form_archive", args=[form.id]), {}),
    }


def test_every_form_view_with_an_id_is_covered(form_a):
    with_ids = {
        pattern.name
        for pattern in form_urls.urlpatterns
        if isinstance(pattern, URLPattern) and "form_id" in str(pattern.pattern)
    }
    assert with_ids == set(requests_for(form_a, {}))


def test_charlie_gets_404_on_every_form_url_of_account_a_and_nothing_changes(
    charlie_client, form_a, page_data
):
    form_incentive_file_set(form=form_a, name="guide.pdf", content_type="", data=b"%PDF")
    before = stored(form_a)
    for name, (url, data) in requests_for(form_a, page_data).items():
        assert charlie_client.get(url).status_code == 404, name
        assert charlie_client.post(url, data).status_code == 404, name
        assert charlie_client.post(url, data, **HTMX).status_code == 404, name
    assert stored(form_a) == before


def test_bob_a_member_of_account_a_can_build_its_forms(bob_client, form_a):
    data = page_inputs(bob_client.get(builder_url(form_a)))
    response = bob_client.post(builder_url(form_a), {**data, "headline": "By Bob"})
    assert response.status_code == 302
    form_a.refresh_from_db()
    assert form_a.headline == "By Bob"
    preview = bob_client.post(preview_url(form_a), {**data, "headline": "Draft"}, **HTMX)
    assert "<h2>Draft</h2>" in preview.content.decode()
    assert bob_client.get(reverse("form_archive", args=[form_a.id])).status_code == 200
