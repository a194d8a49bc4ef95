"""Writing snippets: create (the key derived from the name, unique in the account), update (the
name and body; the key stays), delete. A body is a visual document (DOCUMENT.md's schema) that
may name other snippets in snippet blocks, but never itself, directly or through others."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from broadcasts.rendering import body_snippet_keys
from broadcasts.rendering.document import (
    DocumentInvalid,
    document_parse,
    document_snippet_keys,
)
from broadcasts.services import live_messages_refreeze
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
    it, and show the new body the next time they are rendered: a broadcast when it is sent, a
    live sequence or automation email from its next copy (frozen again here)."""
    _body_check(account=snippet.account, body=body, key=snippet.key)
    with transaction.atomic():
        snippet.name, snippet.body = name, body
        snippet.save(update_fields=["name", "body", "updated_at"])
        _live_emails_refreeze(account=snippet.account, key=snippet.key)
    return snippet


def snippet_delete(*, snippet: Snippet) -> None:
    """Deletes the snippet; emails that name it show nothing there (live sequence and
    automation emails from their next copy) and are told of it by their problems ("Unknown
    snippet sign-off")."""
    with transaction.atomic():
        reaching = _keys_reaching(account=snippet.account, key=snippet.key)
        snippet.delete()
        _live_emails_refreeze(account=snippet.account, key=snippet.key, reaching=reaching)


def _keys_reaching(*, account, key: str) -> set[str]:
    """`key`, and the keys of the account's snippets that show it, directly or through others."""
    names = {
        other: set(body_snippet_keys(body=body, body_format="visual"))
        for other, body in Snippet.objects.filter(account=account).values_list("key", "body")
    }
    reaching = {key}
    grew = True
    while grew:
        grew = False
        for other, named in names.items():
            if other not in reaching and named & reaching:
                reaching.add(other)
                grew = True
    return reaching


def _live_emails_refreeze(*, account, key: str, reaching: set[str] | None = None) -> None:
    """Freezes again the live sequence and automation emails that show the snippet `key`, by
    naming it or a snippet that shows it (`reaching`, found when None)."""
    if reaching is None:
        reaching = _keys_reaching(account=account, key=key)
    live_messages_refreeze(
        account_id=account.pk,
        affected=lambda message: bool(
            reaching & set(body_snippet_keys(body=message.body, body_format=message.body_format))
        ),
    )
