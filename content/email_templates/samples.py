"""The sample email the template pages show a design with."""

from __future__ import annotations

from django.utils.html import escape

from broadcasts.rendering import RenderFailed
from broadcasts.rendering.html import email_document
from content.email_templates.designs import Design
from subscribers.unsubscribe import unsubscribe_test_links

SAMPLE_BODY = """<h1>Five soups for autumn</h1>
<p>Hello Jane,</p>
<p>The evenings are drawing in, and the pot is back on the stove. Here are five soups to see you
through the season, each ready in under an hour. <a href="https://example.com/soups">Read the
recipes</a>.</p>
<ul><li>Roasted squash and sage</li><li>French onion</li><li>Red lentil and lemon</li></ul>
<blockquote>“The best soup is the one you share.”</blockquote>
<p>Until next week,<br>Ann</p>"""


def sample_email_check(*, account, design: Design) -> str:
    """The sample email in `design`, for the account (its name and footer), safe to show in
    the app (its unsubscribe link is a test's); RenderFailed when it cannot be laid out."""
    url, _headers = unsubscribe_test_links(account=account)
    return email_document(
        account=account,
        design=design,
        body_html=SAMPLE_BODY,
        preheader_html="Five soups for autumn",
        unsubscribe_url=url,
        web_view_url="#",
    )


def sample_email_html(*, account, design: Design) -> str:
    """sample_email_check's email, or why the design cannot be laid out."""
    try:
        return sample_email_check(account=account, design=design)
    except RenderFailed as failed:
        return f"<p>{escape(str(failed))}</p>"
