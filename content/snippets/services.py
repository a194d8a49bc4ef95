"""Writing snippets: create (the key derived from the name, unique in the account), update (the
name and body; the key stays), delete. A body is a visual document (DOCUMENT.md's schema) that
may name other snippets in snippet blocks, but never itself, directly or through others."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from broadcasts.rendering.document import (
    DocumentInvalid,
    document_parse,
    document_snippet_keys,
)
from content.models import Snippet

KEY_LENGTH = Snippet._meta.get_field("key").max_length


class SnippetInvalid(ValueError):
    """Why a snippet was not saved; `problems`, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def snippet_key(name: str) -> str:
    """The key a snippet of that name gets (before making it unique): "Sign-off!" -> "sign-off"."""
    key = slugify(name)[: KEY_LENGTH - 4].strip("-_")
    return key or "snippet"


def _body_check(*, account, body: str, key: str | None) -> None:
    """SnippetInvalid when `body` breaks the document schema, or (for the snippet of `key`)
    reaches that key again through the snippets it names."""
    try:
        document = document_parse(body)
    except DocumentInvalid as invalid:
        raise SnippetInvalid(invalid.problems) from None
    if key is None:
        return
    bodies = dict(Snippet.objects.filter(account=account).values_list("key", "body"))
    # Depth-first through what the body names; each snippet's body read from `bodies`.
    stack = [(named, [key, named]) for named in reversed(document_snippet_keys(document))]
    seen = set()
    while stack:
        named, path = stack.pop()
        if named == key:
            shown = " → ".join(path)
            raise SnippetInvalid([f"A snippet cannot include itself ({shown})."])
        if named in seen or named not in bodies:
            continue
        seen.add(named)
        try:
            inner = document_parse(bodies[named])
        except DocumentInvalid:
            continue
        stack += [(other, [*path, other]) for other in reversed(document_snippet_keys(inner))]


def snippet_create(*, account, name: str, body: str) -> Snippet:
    """A new snippet, its key the name's slug ("sign-off"), followed by -2, -3 ... when the
    account has that key already. A snippet new to the account can name no snippet that
    names it, so only the schema is checked."""
    _body_check(account=account, body=body, key=None)
    base = snippet_key(name)
    number = 1
    while True:
        key = base if number == 1 else f"{base}-{number}"
        try:
            with transaction.atomic():
                return Snippet.objects.create(account=account, name=name, key=key, body=body)
        except IntegrityError:
            number += 1


def snippet_update(*, snippet: Snippet, name: str, body: str) -> Snippet:
    """The snippet's new name and body; its key stays, so the emails naming it keep finding
    it, and show the new body the next time they are rendered."""
    _body_check(account=snippet.account, body=body, key=snippet.key)
    snippet.name, snippet.body = name, body
    snippet.save(update_fields=["name", "body", "updated_at"])
    return snippet


def snippet_delete(*, snippet: Snippet) -> None:
    """Deletes the snippet; emails that name it show nothing there and are told of it by their
    problems ("Unknown snippet sign-off")."""
    snippet.delete()
