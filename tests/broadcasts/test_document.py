"""The visual editor's document: every block written as email-safe HTML (tables, inline styles,
alt text), sample documents against their HTML snapshots, Liquid rendered per recipient,
hostile content made inert, and documents that break the schema refused where they are saved.

The snapshots are tests/broadcasts/documents/<name>.html; after a deliberate change of the
renderer, write them again with
    UPDATE_SNAPSHOTS=1 make test ARGS="-q tests/broadcasts/test_document.py"
and read the diff."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from broadcasts.models import Broadcast
from broadcasts.rendering import (
    BroadcastRenderer,
    broadcast_problems,
    frozen_parts,
    preview,
)
from broadcasts.rendering.document import (
    MAX_BLOCKS,
    MAX_DEPTH,
    DocumentInvalid,
    document_parse,
)
from broadcasts.rendering.html import Placeholders, creator_html, literal_html
from broadcasts.rendering.text import html_to_text
from tests.broadcasts.test_views import page_inputs, stored, url
from tests.factories import AccountFactory, SubscriberFactory
from tracking.links import links_create

DOCUMENTS = Path(__file__).parent / "documents"
GREETING = '{{ subscriber.first_name | default: "friend" }}'


def doc(*blocks, layout: str = "left") -> str:
    return json.dumps({"type": "doc", "attrs": {"layout": layout}, "content": list(blocks)})


def paragraph(*inline, **attrs) -> dict:
    return {"type": "paragraph", "attrs": attrs, "content": list(inline)}


def text(value: str, *marks) -> dict:
    node = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def link(href: str) -> dict:
    return {"type": "link", "attrs": {"href": href}}


def image(**attrs) -> dict:
    return {"type": "image", "attrs": {"src": "https://cdn.example.com/a.png", **attrs}}


def button(**attrs) -> dict:
    return {
        "type": "button",
        "attrs": {"text": "Read more", "href": "https://ann.example.com/", **attrs},
    }


def html_of(body: str) -> str:
    """The body as creator_html writes it (sanitised), its Liquid put back as when freezing:
    any other `{{` shows as typed."""
    placeholders = Placeholders(body)
    return placeholders.restore(
        literal_html(creator_html(body=body, body_format="visual", placeholders=placeholders))
    )


@pytest.fixture
def account(db, settings):
    settings.SITE_URL = "https://mail.example.com"
    settings.TRACKING_URL = "https://t.mail.example.com"
    return AccountFactory(name="Ann's Kitchen", postal_address="1 Main Street\nSpringfield")


def visual(account, body: str) -> Broadcast:
    return Broadcast.objects.create(
        account=account, subject="Soup", body=body, body_format=Broadcast.BodyFormat.VISUAL
    )


# --- Every block ------------------------------------------------------------------------------


def test_a_button_is_a_bulletproof_table_with_its_colour_on_the_cell():
    html = html_of(doc(button(background="#b91c1c", color="#fff7ed", align="right")))
    assert html.startswith('<table role="presentation" width="100%"')
    assert '<td align="right"' in html
    cell = re.search(r'<td align="center" bgcolor="#b91c1c" style="([^"]*)">', html)
    assert cell and "background-color:#b91c1c" in cell[1]
    anchor = re.search(r'<a href="https://ann.example.com/" style="([^"]*)"', html)
    assert anchor and "color:#fff7ed" in anchor[1] and "text-decoration:none" in anchor[1]
    assert ">Read more</a></td>" in html
    assert "<div" not in html


def test_an_image_has_a_width_a_fluid_style_and_always_an_alt():
    html = html_of(doc(image(width=300, align="left"), image()))
    first, second = re.findall(r"<img [^>]*>", html)
    assert 'width="300"' in first and 'alt=""' in first
    assert "max-width:100%;height:auto" in first
    assert 'width="600"' in second  # full width
    assert '<td align="left"' in html and '<td align="center"' in html


@pytest.mark.parametrize(
    ("template", "column"), [("classic", 536), ("modern", 576), ("plain", 568)]
)
def test_an_image_is_never_wider_than_the_column_of_the_emails_template(account, template, column):
    """Outlook draws an image at its width attribute whatever the column: a full-width image,
    or one wider than the template's content column, is written at the column's width."""
    broadcast = visual(account, doc(image(), image(width=600), image(width=300)))
    broadcast.email_template = template

    for html in (frozen_parts(broadcast).html, preview(broadcast).html):
        widths = re.findall(r'<img [^>]*width="(\d+)"', html)
        assert widths[:3] == [str(column), str(column), "300"]


def test_a_linked_image_sits_in_its_link():
    html = html_of(doc(image(alt="Soup", href="https://ann.example.com/soup")))
    assert re.search(r'<a href="https://ann.example.com/soup"[^>]*><img [^>]*alt="Soup"', html)


def test_a_spacer_is_a_cell_of_its_height_and_a_divider_an_inline_styled_rule():
    html = html_of(doc({"type": "spacer", "attrs": {"height": 40}}, {"type": "horizontalRule"}))
    assert '<td height="40" style="height:40px;font-size:1px;line-height:40px">' in html
    assert re.search(r'<hr style="[^"]*border-top:1px solid #e5e7eb', html)


def test_text_blocks_carry_inline_styles_and_the_layout_aligns_them():
    body = doc(
        {"type": "heading", "attrs": {"level": 2}, "content": [text("Title")]},
        paragraph(text("centred by the layout")),
        paragraph(text("right"), textAlign="right"),
        layout="center",
    )
    html = html_of(body)
    assert re.search(r'<h2 style="[^"]*font-size:22px[^"]*text-align:center">Title</h2>', html)
    assert '<p style="margin:0 0 16px;text-align:center">centred by the layout</p>' in html
    assert '<p style="margin:0 0 16px;text-align:right">right</p>' in html


def test_marks_lists_quotes_and_code_are_written_as_html():
    html = html_of((DOCUMENTS / "every_block.json").read_text())
    for fragment in (
        "<strong>Bold</strong><br>",
        '<a href="https://a.example/?x=1&amp;y=2" style="color:#2563eb',
        '<ol start="3"',
        '<li style="margin:0 0 4px">one</li>',
        "<blockquote style=",
        "<code>a &lt; b\n\nc</code></pre>",
    ):
        assert fragment in html


def test_the_text_part_reads_well():
    text_part = html_to_text(html_of((DOCUMENTS / "every_block.json").read_text()))
    assert "- one\n- two\n  3. three" in text_part
    assert "A cat (https://cats.example)" in text_part
    assert "Read more (https://read.example)" in text_part
    assert "----------" in text_part


@pytest.mark.parametrize("name", sorted(path.stem for path in DOCUMENTS.glob("*.json")))
def test_sample_documents_render_as_their_snapshots(name):
    html = html_of((DOCUMENTS / f"{name}.json").read_text()) + "\n"
    snapshot = DOCUMENTS / f"{name}.html"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(html)
    assert html == snapshot.read_text()


# --- Liquid -----------------------------------------------------------------------------------


def test_liquid_in_texts_and_links_is_rendered_for_each_recipient(account):
    body = doc(
        paragraph(text(f"Hello {GREETING}!")),
        paragraph(text("Your page", link("https://ann.example.com/?e={{ subscriber.email }}"))),
        paragraph(text("Soup", link("https://ann.example.com/soup"))),
        button(text="Hi {{ subscriber.first_name }}", href="{{ unsubscribe_url }}"),
    )
    broadcast = visual(account, body)
    assert broadcast_problems(broadcast) == []
    frozen = frozen_parts(broadcast)
    broadcast.frozen_subject, broadcast.frozen_html, broadcast.frozen_text = frozen[:3]
    links_create(broadcast=broadcast, urls=frozen.links)
    renderer = BroadcastRenderer(broadcast)
    rita = SubscriberFactory(account=account, email="rita@example.org", first_name="Rita")
    nameless = SubscriberFactory(account=account, email="x@example.org", first_name="")
    rita_html = renderer.message(delivery_id=1, subscriber=rita).alternatives[0][0]
    nameless_message = renderer.message(delivery_id=2, subscriber=nameless)
    assert "Hello Rita!" in rita_html and ">Hi Rita</a>" in rita_html
    assert "Hello friend!" in nameless_message.alternatives[0][0]
    assert "Hello friend!" in nameless_message.body
    assert 'href="https://ann.example.com/?e=rita@example.org"' in rita_html
    # Plain links are tracked, as in any body; one holding Liquid is not (tracking/links.py).
    assert frozen.links == ("https://ann.example.com/soup",)


def test_liquid_problems_are_named_by_their_block(account):
    broadcast = visual(
        account,
        doc(paragraph(text("Fine")), paragraph(text("Hi {{ subscriber.frist_name }}"))),
    )
    problems = broadcast_problems(broadcast)
    assert len(problems) == 1
    assert problems[0].message.startswith("Block 2 (paragraph): Unknown variable")
    assert "first_name" in problems[0].message


def test_a_liquid_tag_may_open_in_one_block_and_close_in_another(account):
    broadcast = visual(
        account,
        doc(
            paragraph(text("{% if subscriber.first_name %}")),
            paragraph(text("Hello")),
            paragraph(text("{% endif %}")),
        ),
    )
    assert broadcast_problems(broadcast) == []
    unclosed = visual(account, doc(paragraph(text("{% if subscriber.first_name %}Hi"))))
    assert "endif" in broadcast_problems(unclosed)[0].message
    broken = visual(account, doc(paragraph(text("Hi")), paragraph(text("{{ 'x' | shout }}"))))
    assert [problem.message for problem in broadcast_problems(broken)] == [
        "Block 2 (paragraph): Unknown filter “shout”."
    ]


# --- Hostile content --------------------------------------------------------------------------

HOSTILE = [
    paragraph(text("<script>alert(1)</script><img src=x onerror=alert(1)>")),
    paragraph(text("x", link("javascript:alert(1)"))),
    image(alt='"><script>alert(1)</script>', href="https://ann.example.com/"),
    button(text="<b onclick=alert(1)>Go</b>"),
]


@pytest.mark.parametrize("block", HOSTILE, ids=["text", "link", "alt", "button_text"])
def test_hostile_text_comes_out_inert_or_is_refused(block):
    try:
        html = html_of(doc(block))
    except DocumentInvalid:
        return
    elements = _Elements()
    elements.feed(html)
    assert elements.tags <= {"p", "a", "table", "tbody", "tr", "td", "img"}
    assert not [name for name in elements.attributes if name.startswith("on")]
    assert not [value for value in elements.values if "javascript" in value.lower()]


class _Elements(HTMLParser):
    """The tags, attribute names and attribute values of some HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.values: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes |= {name for name, _value in attrs}
        self.values += [value or "" for _name, value in attrs]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (paragraph(text("x", link("javascript:alert(1)"))), "href must be an http, https"),
        (image(src="javascript:alert(1)"), "Block 1 (image): src must be an http or https URL"),
        (image(src="data:image/png;base64,AAAA"), "src must be an http or https URL"),
        (image(href="javascript:alert(1)"), "href must be an http, https or mailto URL"),
        (button(href=" javascript:alert(1)"), "Block 1 (button): href must be"),
        (button(background="red;background-image:url(x)"), "background must be a colour"),
        (button(color="#fff;position:fixed"), "color must be a colour"),
        (image(onerror="alert(1)"), "unknown attribute 'onerror'"),
        (image(width="300"), "width must be a whole number from 16 to 600"),
        (image(width=True), "width must be a whole number"),
        ({"type": "script", "content": []}, "Block 1: unknown block type 'script'"),
        (paragraph(text("x"), style="color:red"), "unknown attribute 'style'"),
        ({"type": "spacer", "attrs": {"height": 500}}, "height must be a whole number from 8"),
        (paragraph({"type": "image"}), "unknown inline node 'image'"),
        (paragraph(text("x", {"type": "font"})), "unknown mark 'font'"),
        ({"type": "button", "attrs": {"href": "https://a.example"}}, "text is required"),
        ({"type": "listItem", "content": []}, "a listItem cannot be here"),
    ],
)
def test_a_document_breaking_the_schema_is_refused_saying_where(block, message):
    with pytest.raises(DocumentInvalid) as refused:
        document_parse(doc(block))
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


def _nested_list(levels: int) -> dict:
    node = paragraph(text("deep"))
    for _ in range(levels):
        node = {"type": "bulletList", "content": [{"type": "listItem", "content": [node]}]}
    return node


def test_limits_on_blocks_and_depth():
    document_parse(doc(_nested_list(3)))  # depth 7
    with pytest.raises(DocumentInvalid, match=f"nested more than {MAX_DEPTH} levels"):
        document_parse(doc(_nested_list(4)))
    document_parse(doc(*[{"type": "horizontalRule"}] * MAX_BLOCKS))
    with pytest.raises(DocumentInvalid, match=f"more than {MAX_BLOCKS} blocks"):
        document_parse(doc(*[{"type": "horizontalRule"}] * (MAX_BLOCKS + 1)))
    with pytest.raises(DocumentInvalid, match="nested too deeply"):
        document_parse("[" * 100_000)
    with pytest.raises(DocumentInvalid, match="not valid JSON"):
        document_parse("{'type': 'doc'}")
    with pytest.raises(DocumentInvalid, match='object of type "doc"'):
        document_parse('{"type": "paragraph"}')


# --- Saving through the broadcast editor ------------------------------------------------------


@pytest.fixture
def broadcast_a(account_a, alice):
    return Broadcast.objects.create(account=account_a, subject="Soup", body="Hello.")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("not json", "The document is not valid JSON"),
        (doc({"type": "video"}), "Block 1: unknown block type"),
        (doc(image(src="ftp://x.example/a.png")), "Block 1 (image): src must be an http or https"),
        (doc(paragraph(text("x"), extra=1)), "unknown attribute"),
        (doc(_nested_list(6)), "levels deep"),
        (doc(*[paragraph()] * (MAX_BLOCKS + 1)), "more than 500 blocks"),
    ],
)
def test_the_editor_refuses_a_tampered_document_and_saves_nothing(
    alice_client, broadcast_a, body, error
):
    data = page_inputs(alice_client.get(url("broadcast_edit", broadcast_a)))
    before = stored(broadcast_a)
    response = alice_client.post(
        url("broadcast_edit", broadcast_a), {**data, "body_format": "visual", "body": body}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was saved" in page
    assert error in page.replace("&quot;", '"').replace("&#x27;", "'")
    assert stored(broadcast_a) == before


def test_the_editor_saves_a_valid_document_and_previews_it(alice_client, broadcast_a):
    data = page_inputs(alice_client.get(url("broadcast_edit", broadcast_a)))
    body = doc(paragraph(text(f"Hello {GREETING}")), button())
    response = alice_client.post(
        url("broadcast_edit", broadcast_a), {**data, "body_format": "visual", "body": body}
    )
    assert response.status_code == 302
    broadcast_a.refresh_from_db()
    assert broadcast_a.body_format == "visual" and broadcast_a.body == body
    shown = preview(broadcast_a)
    assert shown.problems == []
    assert "Hello Jane" in shown.html and 'bgcolor="#2563eb"' in shown.html
    assert "Read more (https://ann.example.com/)" in shown.text
