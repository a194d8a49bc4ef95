"""The creator builds a form in Chromium: create it, ask for the first name, write a headline and
watch the live preview follow, tag new subscribers, turn on double opt-in, save, and copy the
embed code. Then a mistake is refused inline without losing the saved form."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from subscribers.models import Form
from subscribers.signup_forms.embed import form_embed_code, form_hosted_url
from tests.e2e.steps import build_form, sign_up


def test_creator_builds_a_form_and_copies_its_embed_code(site: str, page: Page):
    sign_up(page, site, email="ann@example.com", account_name="Ann's Kitchen")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Forms").click()
    expect(page.get_by_role("heading", name="Grow your list with a form")).to_be_visible()

    uid = build_form(page, site, name="Weekly recipes", tag="recipes", double_opt_in=True)

    form = Form.objects.get(uid=uid)
    assert form.name == "Weekly recipes"
    assert form.headline == "Join Weekly recipes"
    assert [field["key"] for field in form.fields] == ["email", "first_name"]
    assert list(form.tags.values_list("name", flat=True)) == ["recipes"]
    assert form.double_opt_in is True

    # The embed code and the hosted page; the Copy button puts the code on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    embed_code = page.get_by_label("Embed code")
    expect(embed_code).to_have_value(form_embed_code(form))
    page.get_by_role("button", name="Copy embed code").click()
    expect(page.get_by_text("Copied. Paste it into your site.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == embed_code.input_value()
    hosted = page.get_by_role("link", name=f"/f/{uid}/")
    expect(hosted).to_have_attribute("href", form_hosted_url(form))

    # The style and the confirmation email preview follow the edits too, unsaved.
    builder = page.locator("#builder-form")
    builder.get_by_label("Slide-in (from the corner)").check()
    expect(page.locator("#form-preview")).to_contain_text("slides this form in")
    builder.get_by_label("Confirmation email subject").fill("Confirm, {{ first_name }}!")
    expect(page.locator("#confirmation-preview")).to_contain_text("Confirm, Sam!")
    form.refresh_from_db()
    assert form.style == Form.Style.INLINE

    # A redirect that is not a web address is refused inline; the saved form stays as it was.
    builder.get_by_label("Redirect to a URL").check()
    builder.get_by_label("Redirect to", exact=True).fill("javascript:alert(1)")
    builder.get_by_role("button", name="Save form").click()
    expect(page.get_by_text("Nothing was saved.")).to_be_visible()
    expect(
        page.get_by_text("Enter a web address starting with http:// or https://.")
    ).to_be_visible()
    expect(builder.get_by_label("Confirmation email subject")).to_have_value(
        "Confirm, {{ first_name }}!"
    )
    form.refresh_from_db()
    assert (form.style, form.success_action, form.redirect_url) == ("inline", "message", "")

    # The list shows the form with its figures.
    page.get_by_role("link", name="← Forms").click()
    row = page.get_by_role("row", name="Weekly recipes")
    expect(row).to_contain_text("Inline")
    expect(row).to_contain_text("—")
