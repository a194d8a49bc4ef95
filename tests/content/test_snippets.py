"""Snippets: reusable content that emails name by key, as a snippet block in a visual document
or as {{ snippet.key }} in Markdown or HTML, expanded from the snippet's current body whenever
the email is rendered; never including themselves; each account's own."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from broadcasts.models import Broadcast
from broadcasts.rendering import broadcast_problems, frozen_parts, preview
from content.models import Snippet
from content.snippets.services import (
    SnippetInvalid,
    snippet_create,
    snippet_delete,
    snippet_update,
)
from sequences.models import Sequence
from sequences.services import EmailValues, email_create, email_publish, email_update


def doc(*blocks) -> str:
    return json.dumps({"type": "doc", "attrs": {"layout": "left"}, "content": list(blocks)})


def paragraph(value: str) -> dict:
    return {"type": "paragraph", "content": [{"type": "text", "text": value}]}


def snippet_block(key: str) -> dict:
    return {"type": "snippet", "attrs": {"key": key}}


@pytest.fixture
def sign_off(account_a):
    return snippet_create(
        account=account_a,
        name="Sign-off!",
        body=doc(paragraph('Cheers, {{ subscriber.first_name | default: "friend" }}. Ann')),
    )


def broadcast(account, body: str, body_format: str = "visual") -> Broadcast:
    account.postal_address = "1 Main Street"
    account.save()
    return Broadcast.objects.create(
        account=account, subject="Soup", body=body, body_format=body_format
    )


def test_a_snippets_key_comes_from_its_name_and_is_unique_in_the_account(account_a, account_b):
    first = snippet_create(account=account_a, name="Sign-off!", body=doc())
    second = snippet_create(account=account_a, name="Sign off", body=doc())
    other = snippet_create(account=account_b, name="Sign-off", body=doc())
    assert (first.key, second.key, other.key) == ("sign-off", "sign-off-2", "sign-off")
    snippet_update(snippet=first, name="Goodbye", body=doc())
    first.refresh_from_db()
    assert (first.name, first.key) == ("Goodbye", "sign-off")


def test_a_snippet_block_expands_to_the_snippets_current_content(account_a, sign_off):
    email = broadcast(account_a, doc(paragraph("Hello."), snippet_block("sign-off")))
    assert broadcast_problems(email) == []
    assert "Cheers, Jane. Ann" in preview(email).html
    assert "Cheers, Jane. Ann" in preview(email).text
    snippet_update(snippet=sign_off, name=sign_off.name, body=doc(paragraph("Love, Ann")))
    shown = preview(email).html
    assert "Love, Ann" in shown and "Cheers" not in shown
    # Frozen for sending, the snippet's Liquid is the email's, rendered per recipient.
    snippet_update(snippet=sign_off, name="Sign-off", body=doc(paragraph("Bye {{ account.name }}")))
    assert "Bye {{ account.name }}" in frozen_parts(email).html


def test_a_snippet_reference_in_markdown_or_html_expands_to_its_html(account_a, sign_off):
    markdown = broadcast(account_a, "Hello.\n\n{{ snippet.sign-off }}\n\nBye.", "markdown")
    html = preview(markdown).html
    assert broadcast_problems(markdown) == []
    assert "Hello.</p>" in html and "Cheers, Jane. Ann</p>" in html and "Bye.</p>" in html
    assert "Ann</p></p>" not in html
    inline = broadcast(account_a, "<div>Hi {{snippet.sign-off}}</div>", "html")
    assert "Cheers, Jane. Ann" in preview(inline).html


def _live_sequence_email(account, *, body: str, body_format: str = "visual") -> Broadcast:
    """The message of a published sequence email: frozen once, sent again and again."""
    account.postal_address = "1 Main Street"
    account.save()
    sequence = Sequence.objects.create(account=account, name="Welcome")
    email = email_create(sequence=sequence)
    email_update(
        email=email,
        values=EmailValues(
            subject="Welcome",
            preview_text="",
            body=body,
            body_format=body_format,
            delay_amount=0,
            delay_unit="days",
        ),
    )
    email_publish(email=email)
    return Broadcast.objects.get(pk=email.message_id)


def test_a_live_sequence_email_sends_the_snippets_new_content_from_its_next_copy(
    account_a, sign_off
):
    footer = snippet_create(
        account=account_a, name="Footer", body=doc(snippet_block("sign-off"), paragraph("PS"))
    )
    by_block = _live_sequence_email(account_a, body=doc(paragraph("Hi."), snippet_block("footer")))
    by_liquid = _live_sequence_email(
        account_a, body="Hi.\n\n{{ snippet.sign-off }}", body_format="markdown"
    )
    other = _live_sequence_email(account_a, body=doc(paragraph("Nothing shared.")))
    untouched = other.frozen_html
    assert "Cheers, {{ subscriber.first_name" in by_block.frozen_html

    snippet_update(snippet=sign_off, name=sign_off.name, body=doc(paragraph("Love, Ann")))

    for message in (by_block, by_liquid):
        message.refresh_from_db()
        assert "Love, Ann" in message.frozen_html and "Cheers" not in message.frozen_html
        assert "Love, Ann" in message.frozen_text
    other.refresh_from_db()
    assert other.frozen_html == untouched
    snippet_delete(snippet=footer)
    by_block.refresh_from_db()
    assert "Love, Ann" not in by_block.frozen_html and "Hi." in by_block.frozen_html


def test_an_unknown_snippet_renders_nothing_and_is_a_problem(account_a, sign_off):
    email = broadcast(account_a, doc(paragraph("Hello."), snippet_block("nope")))
    assert [problem.message for problem in broadcast_problems(email)] == ["Unknown snippet nope"]
    assert "Hello." in preview(email).html
    markdown = broadcast(account_a, "Hi {{ snippet.gone }}", "markdown")
    assert [problem.message for problem in broadcast_problems(markdown)] == ["Unknown snippet gone"]
    snippet_delete(snippet=sign_off)
    email.body = doc(snippet_block("sign-off"))
    assert [problem.message for problem in broadcast_problems(email)] == [
        "Unknown snippet sign-off"
    ]


def test_liquid_problems_in_a_snippet_are_named_by_its_block(account_a):
    snippet_create(account=account_a, name="Bad", body=doc(paragraph("{{ subscriber.nme }}")))
    email = broadcast(account_a, doc(paragraph("Hi"), snippet_block("bad")))
    [problem] = broadcast_problems(email)
    assert problem.message.startswith("Block 2 (snippet bad): Unknown variable")
    markdown = broadcast(account_a, "Hi\n\n{{ snippet.bad }}", "markdown")
    [problem] = broadcast_problems(markdown)
    assert problem.message.startswith("Snippet bad, block 1 (paragraph): Unknown variable")


def test_a_snippet_cannot_include_itself_directly_or_through_others(account_a, sign_off):
    with pytest.raises(SnippetInvalid, match=r"cannot include itself \(sign-off → sign-off\)"):
        snippet_update(snippet=sign_off, name="x", body=doc(snippet_block("sign-off")))
    footer = snippet_create(account=account_a, name="Footer", body=doc(snippet_block("sign-off")))
    with pytest.raises(SnippetInvalid, match="sign-off → footer → sign-off"):
        snippet_update(snippet=sign_off, name="x", body=doc(snippet_block("footer")))
    sign_off.refresh_from_db()
    assert "Cheers" in sign_off.body
    assert footer.body == doc(snippet_block("sign-off"))


def test_a_cycle_made_all_the_same_renders_once_and_is_a_problem(account_a, sign_off):
    # As two editors saving at once could leave it: the renderer stops, and says why.
    Snippet.objects.filter(pk=sign_off.pk).update(body=doc(paragraph("A"), snippet_block("b")))
    snippet_create(account=account_a, name="B", body=doc(paragraph("B"), snippet_block("sign-off")))
    email = broadcast(account_a, doc(snippet_block("sign-off")))
    assert [problem.message for problem in broadcast_problems(email)] == [
        "Snippet sign-off includes itself (sign-off → b → sign-off)"
    ]


def test_a_snippet_body_breaking_the_schema_is_refused(account_a):
    with pytest.raises(SnippetInvalid, match="Block 1 \\(image\\): src must be"):
        snippet_create(
            account=account_a, name="Bad", body=doc({"type": "image", "attrs": {"src": "x"}})
        )
    assert not Snippet.objects.exists()


# --- Pages ------------------------------------------------------------------------------------


def test_creating_editing_and_deleting_a_snippet(alice_client, account_a):
    response = alice_client.get(reverse("snippet_create"))
    assert 'id="id_body"' in response.content.decode()
    response = alice_client.post(
        reverse("snippet_create"), {"name": "Sign-off", "body": doc(paragraph("Bye"))}
    )
    assert response.status_code == 302
    snippet = Snippet.objects.get(account=account_a)
    assert snippet.key == "sign-off"
    page = alice_client.get(reverse("snippet_list")).content.decode()
    assert "snippet.sign-off" in page and "Sign-off" in page
    response = alice_client.post(
        reverse("snippet_edit", args=[snippet.id]), {"name": "Bye", "body": doc(paragraph("Ciao"))}
    )
    assert response.status_code == 302
    snippet.refresh_from_db()
    assert (snippet.name, snippet.key, snippet.body) == ("Bye", "sign-off", doc(paragraph("Ciao")))
    response = alice_client.post(reverse("snippet_delete", args=[snippet.id]))
    assert response.status_code == 302 and not Snippet.objects.exists()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{", "The document is not valid JSON"),
        (doc({"type": "snippet", "attrs": {"key": "sign-off"}}), "cannot include itself"),
        (
            doc({"type": "button", "attrs": {"text": "x", "href": "javascript:x"}}),
            "Block 1 (button)",
        ),
    ],
)
def test_a_bad_body_is_refused_and_nothing_changes(alice_client, sign_off, body, error):
    response = alice_client.post(
        reverse("snippet_edit", args=[sign_off.id]), {"name": "New", "body": body}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was saved" in page and error in page
    before = sign_off.body
    sign_off.refresh_from_db()
    assert (sign_off.name, sign_off.body) == ("Sign-off!", before)


def test_the_library_lists_the_accounts_snippets_for_the_editor(alice_client, account_b, sign_off):
    snippet_create(account=account_b, name="Theirs", body=doc())
    library = alice_client.get(reverse("snippet_library")).json()
    assert library == {
        "snippets": [{"key": "sign-off", "name": "Sign-off!", "body": json.loads(sign_off.body)}]
    }


@pytest.mark.parametrize("name", ["snippet_edit", "snippet_delete"])
def test_another_accounts_snippet_is_not_found(charlie_client, sign_off, name):
    before = (sign_off.name, sign_off.body)
    for method in (charlie_client.get, charlie_client.post):
        response = method(reverse(name, args=[sign_off.id]), {"name": "Mine", "body": doc()})
        assert response.status_code == 404
    sign_off.refresh_from_db()
    assert (sign_off.name, sign_off.body) == before


def editor_mount(page: str) -> tuple[str, str]:
    """The body's wrapper and the visual editor's mount, as `{% visual_editor %}` wrote them."""
    source = re.search(r"<div data-email-source[^>]*>", page)[0]
    mount = re.search(r"<div data-email-editor[^>]*>", page)[0]
    return source, mount


def test_a_snippet_is_written_in_the_visual_editor_which_leaves_it_out_of_its_own_menu(
    alice_client, sign_off
):
    source, mount = editor_mount(alice_client.get(reverse("snippet_create")).content.decode())
    assert "data-visual" in source
    assert 'data-input="id_body"' in mount and 'data-content-label="Snippet content"' in mount
    assert f'data-snippets-url="{reverse("snippet_library")}"' in mount
    assert "data-snippet-key" not in mount

    page = alice_client.get(reverse("snippet_edit", args=[sign_off.id])).content.decode()
    source, mount = editor_mount(page)
    assert "data-visual" in source and 'data-snippet-key="sign-off"' in mount
    assert page.count("data-email-editor") == 1
