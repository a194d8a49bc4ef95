"""Rendering broadcasts: checking their Liquid, freezing them, and one message per recipient.

- `broadcast_problems(broadcast)`: what stops the subject, preview text or body from rendering
  (syntax, unknown tags, filters and variables, limits), with line numbers; [] when sendable.
- `frozen_parts(broadcast)`: done once when sending starts, without side effects. The body
  (Markdown or HTML) is sanitised and laid out in its design (Broadcast.email_template:
  content.email_templates) with its preview text and footer, CSS inlined, and
  the text part written from that HTML; all three parts stay Liquid templates (see html.py for how
  Liquid survives). Tracked links are markers of their position among the body's distinct URLs,
  which come back with the parts for broadcast_send to store as Link rows; the HTML ends with the
  open pixel (tracking/links.py).
- `BroadcastRenderer(broadcast).message(delivery_id=..., subscriber=...)`: the message for one
  recipient, rendered from templates compiled once per process and broadcast, its MIME bytes
  written from a per-broadcast skeleton (mime.py), its links and pixel signed for its delivery.
- `sample_subject(subject, account=...)`: the subject as the sample subscriber gets it, which
  names a broadcast on the creator's pages (Broadcast.name); cached, so lists stay cheap.
- `preview(broadcast, subscriber=None)`: the editor's preview of unsaved values, safe to show.
  It and the test copy are not tracked: original URLs, no pixel; and their unsubscribe links are
  a test's, which unsubscribe nobody, whoever's data they show. Otherwise the HTML is the sent
  HTML.
- `web_version(broadcast, subscribe_url=...)`: the message as anyone may see it at its web view
  and in the public archive: rendered from its current content for nobody (no subscriber data,
  so `default` filters apply), sanitised after rendering as the preview is, with original URLs,
  no pixel, and no unsubscribe link (a signup link instead, or none).
- `public_subject(subject, account=...)`: the subject as the web version shows it, for titles.
- `body_html_problem(body=..., body_format=..., snippets=None)`: why a body is too large or too
  deeply nested to be rendered (bounds.py), checked where it is saved and in
  `broadcast_problems`.

A body is Markdown, HTML, or a visual document (body_format "visual": the editor's JSON,
document.py), whose Liquid problems are named by block ("Block 3 (paragraph): ..."). Snippets
(content.models.Snippet, read through `account_snippets(account)`) are expanded wherever the
body is laid out: a snippet block, or `{{ snippet.key }}` in Markdown or HTML; an unknown one
is a problem ("Unknown snippet sign-off").

The sent HTML is sanitised too, once, when the broadcast is frozen (not per recipient): what
subscribers get is then exactly what the creator previewed, without scripts, forms or event
handlers that mail clients would strip or spam filters hold against the sender. Per recipient,
only escaped values are added: the HTML environment escapes every output and has no `safe`
filter. The preview, shown inside the app, is sanitised again after rendering, so that even a
subscriber's data cannot put markup in the creator's page.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from typing import NamedTuple
from urllib.parse import urlparse

from django.conf import settings
from django.core.mail import make_msgid
from django.utils.html import escape
from liquid.exceptions import LiquidError

from broadcasts.public.links import web_view_url
from broadcasts.rendering.bounds import RenderFailed
from broadcasts.rendering.document import (
    DocumentInvalid,
    Snippets,
    document_parse,
    document_render,
    document_snippet_keys,
)
from broadcasts.rendering.html import (
    SNIPPET_REFERENCE,
    Placeholders,
    anchor_hrefs_replace,
    creator_html,
    email_document,
    first_image_src,
    literal_html,
    literal_text,
    preheader_html,
    sanitise,
    snippet_references,
)
from broadcasts.rendering.liquid import (
    HTML,
    LAX_HTML,
    LAX_TEXT,
    TEXT,
    TemplateProblem,
    error_line,
    error_message,
    template_problems,
)
from broadcasts.rendering.mime import BroadcastEmail, MessageSkeleton
from broadcasts.rendering.text import html_to_text
from content.email_templates.designs import Design, design_for
from content.models import Snippet
from convertkit.mail import TextNamesEmail
from subscribers.mail import (
    SubscriberNotMailable,
    account_from_email,
    footer_text,
    postal_address_check,
    subscriber_to_email,
)
from subscribers.models import CustomField, Subscriber
from subscribers.unsubscribe import unsubscribe_links, unsubscribe_test_links
from tracking.links import (
    MAX_LINKS,
    OPEN_MARKER,
    BroadcastTracking,
    link_marker,
    url_trackable,
)

__all__ = [
    "BroadcastRenderer",
    "DocumentInvalid",
    "FrozenParts",
    "Preview",
    "RenderFailed",
    "account_snippets",
    "body_snippet_keys",
    "TemplateProblem",
    "WebVersion",
    "body_html_problem",
    "broadcast_problems",
    "frozen_parts",
    "preview",
    "public_subject",
    "sample_subject",
    "test_message_build",
    "web_version",
]

SAMPLE_FIRST_NAME = "Jane"
SAMPLE_EMAIL = "jane@example.com"
_SAMPLE_SUBJECTS_CACHED = 4096
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_COMPILED_CACHE_SIZE = 16


class FrozenParts(NamedTuple):
    subject: str
    html: str
    text: str
    # The tracked links' URLs, the first one's position 1: the Link rows to store.
    links: tuple[str, ...] = ()


class Preview(NamedTuple):
    subject: str
    html: str
    text: str
    problems: list[TemplateProblem]


class WebVersion(NamedTuple):
    subject: str
    preview_text: str
    # The body alone (sanitised after rendering), for the archive's page and feed.
    body_html: str
    # The whole email document, as the web view shows it.
    html: str
    # The first image of the body ("" when none), for link previews.
    image_url: str


# Contexts ------------------------------------------------------------------------------------


def _subscriber_context(subscriber: Subscriber, keys) -> dict:
    """subscriber.first_name, .email, .fields.<key> and .<key>; every key in `keys` is defined
    (None when the subscriber has no value), so `default` filters work and nothing is unknown."""
    fields = dict(subscriber.fields) if isinstance(subscriber.fields, dict) else {}
    for key in keys:
        fields.setdefault(key, None)
    context = {key: fields[key] for key in keys}
    context.update(first_name=subscriber.first_name, email=subscriber.email, fields=fields)
    return context


def _sample_subscriber(account) -> Subscriber:
    return Subscriber(account=account, email=SAMPLE_EMAIL, first_name=SAMPLE_FIRST_NAME, fields={})


def _nobody(account) -> Subscriber:
    """Whom the web version is rendered for: no name, no address, no field."""
    return Subscriber(account=account, email="", first_name="", fields={})


def _context(*, subscriber: Subscriber, keys, account, url: str) -> dict:
    return {
        "subscriber": _subscriber_context(subscriber, keys),
        "unsubscribe_url": url,
        "account": {"name": account.name},
    }


def _custom_keys(broadcast) -> set[str]:
    return set(
        CustomField.objects.filter(account_id=broadcast.account_id).values_list("key", flat=True)
    )


def _one_line(text: str) -> str:
    # A subject or preheader is one line: no value can add a line (or a header) to it.
    return " ".join(text.split())


# Problems ------------------------------------------------------------------------------------


def _problems(
    broadcast, *, keys: set[str], sample: dict, snippets: Snippets
) -> list[TemplateProblem]:
    problems = []
    for part, source, environment in (
        ("subject", broadcast.subject, TEXT),
        ("preview_text", broadcast.preview_text, HTML),
    ):
        problems += template_problems(
            part=part, source=source, environment=environment, custom_keys=keys, sample=sample
        )
    return problems + _body_problems(broadcast, keys=keys, sample=sample, snippets=snippets)


def _body_problems(broadcast, *, keys: set[str], sample: dict, snippets: Snippets):
    """The body's Liquid problems: by line in Markdown or HTML (where `{{ snippet.key }}` is
    no Liquid), by block in a visual document and in the snippets either names; then what
    breaks the document's schema, and the snippets that are unknown or include themselves."""
    body = broadcast.body
    if broadcast.body_format == "visual":
        try:
            document = document_parse(body)
        except DocumentInvalid as invalid:
            return [TemplateProblem("body", None, problem) for problem in invalid.problems]
        problems = _document_problems(
            document, where="Block", keys=keys, sample=sample, snippets=snippets
        )
    else:
        problems = template_problems(
            part="body",
            source=SNIPPET_REFERENCE.sub(lambda match: "\n" * match[0].count("\n"), body),
            environment=HTML,
            custom_keys=keys,
            sample=sample,
        )
        for key in snippet_references(body):
            document = snippets.document(key)
            if document is not None:
                problems += _document_problems(
                    document,
                    where=f"Snippet {key}, block",
                    keys=keys,
                    sample=sample,
                    snippets=snippets,
                )
    return problems + [TemplateProblem("body", None, problem) for problem in snippets.problems]


def _document_problems(document, *, where: str, keys: set[str], sample: dict, snippets: Snippets):
    """The Liquid problems of a document's blocks, each named by its block: the Liquid of all
    blocks is checked as one template (a tag may open in one block and close in another), the
    block of each line known."""
    try:
        rendered = document_render(
            document, placeholders=Placeholders(), snippets=snippets, where=where
        )
    except RenderFailed:
        return []  # too large: body_html_problem says so
    lines: list[str] = []
    sources = []
    for block_where, markup in rendered.liquid:
        source = " ".join(markup)
        lines += [block_where] * (source.count("\n") + 1)
        sources.append(source)
    problems = template_problems(
        part="body", source="\n".join(sources), environment=HTML, custom_keys=keys, sample=sample
    )
    return [
        TemplateProblem(
            "body",
            None,
            f"{lines[problem.line - 1]}: {problem.message}" if problem.line else problem.message,
        )
        for problem in problems
    ]


def account_snippets(account) -> Snippets:
    """The account's snippets as the renderers read them: each key looked up once."""

    def load(key: str) -> str | None:
        return (
            Snippet.objects.filter(account_id=account.id, key=key)
            .values_list("body", flat=True)
            .first()
        )

    return Snippets(load)


def body_snippet_keys(*, body: str, body_format: str) -> list[str]:
    """The keys of the snippets a body names itself (a visual body's snippet blocks, or the
    `{{ snippet.key }}` of Markdown or HTML), once each; none for a document that is invalid."""
    if body_format != "visual":
        return snippet_references(body)
    try:
        return document_snippet_keys(document_parse(body))
    except DocumentInvalid:
        return []


def body_html_problem(
    *, body: str, body_format: str, snippets: Snippets | None = None
) -> str | None:
    """Why the body cannot be laid out as an email (too large, or too deeply nested for the
    renderers: bounds.py), in the creator's words; None when it can. Snippets are expanded
    from `snippets` (left out when None). DocumentInvalid for a visual body that breaks the
    schema."""
    try:
        creator_html(
            body=body, body_format=body_format, placeholders=Placeholders(body), snippets=snippets
        )
    except RenderFailed as failed:
        return str(failed)
    return None


def broadcast_problems(broadcast) -> list[TemplateProblem]:
    """Why the broadcast's subject, preview text or body would not render, with the line of
    each problem in that part (the block, in a visual document); [] when it can be sent."""
    account = broadcast.account
    keys = _custom_keys(broadcast)
    snippets = account_snippets(account)
    url, _headers = unsubscribe_test_links(account=account)
    sample = _context(subscriber=_sample_subscriber(account), keys=keys, account=account, url=url)
    problems = _problems(broadcast, keys=keys, sample=sample, snippets=snippets)
    try:
        layout = body_html_problem(
            body=broadcast.body, body_format=broadcast.body_format, snippets=snippets
        )
    except DocumentInvalid:
        layout = None  # listed above
    if layout:
        problems.append(TemplateProblem("body", None, layout))
    return problems


# Freezing ------------------------------------------------------------------------------------


def frozen_parts(broadcast) -> FrozenParts:
    """The subject, HTML and text every recipient's message is rendered from (still Liquid).

    Raises PostalAddressMissing when the account has no postal address, RenderFailed if the
    result does not compile (broadcast_problems should have said so first)."""
    account = broadcast.account
    postal_address_check(account)
    placeholders = Placeholders(
        broadcast.body, broadcast.preview_text, account.name, account.postal_address
    )
    design = design_for(account=account, key=broadcast.email_template)
    body_html = creator_html(
        body=broadcast.body,
        body_format=broadcast.body_format,
        placeholders=placeholders,
        snippets=account_snippets(account),
        content_width=design.inner_width,
    )
    # URL -> the placeholder of its marker, in order of first appearance.
    tracked: dict[str, str] = {}

    def track(url: str) -> str | None:
        if url not in tracked:
            if (
                len(tracked) >= MAX_LINKS
                or placeholders.holds_markup(url)
                or not url_trackable(url)
            ):
                return None
            tracked[url] = placeholders.add(link_marker(len(tracked) + 1))
        return tracked[url]

    unsubscribe = placeholders.add("{{ unsubscribe_url }}")
    document = email_document(
        account=account,
        design=design,
        body_html=anchor_hrefs_replace(body_html, track),
        preheader_html=preheader_html(broadcast.preview_text, placeholders),
        unsubscribe_url=unsubscribe,
        open_pixel_url=placeholders.add(OPEN_MARKER),
        web_view_url=web_view_url(broadcast),
    )
    text = html_to_text(body_html, tracked) + footer_text(account=account, url=unsubscribe)
    frozen = FrozenParts(
        subject=broadcast.subject,
        html=placeholders.restore(literal_html(document)),
        text=placeholders.restore(literal_text(text)),
        links=tuple(tracked),
    )
    _compile(frozen)
    return frozen


# Per recipient -------------------------------------------------------------------------------


class _Compiled:
    """A broadcast's frozen parts compiled, and the custom field keys they name."""

    def __init__(self, frozen: FrozenParts) -> None:
        self.frozen = frozen
        self.subject = TEXT.from_string(frozen.subject)
        self.html = HTML.from_string(frozen.html)
        self.text = TEXT.from_string(frozen.text)
        keys = set()
        for template in (self.subject, self.html, self.text):
            for variable in template.analyze(include_partials=False).globals.get("subscriber", []):
                path = variable.segments[1:]
                if path[:1] == ["fields"]:
                    path = path[1:]
                if path and isinstance(path[0], str) and path[0] not in ("first_name", "email"):
                    keys.add(path[0])
        self.keys = frozenset(keys)

    def render(self, context: dict) -> tuple[str, str, str]:
        part = "subject"
        try:
            subject = _one_line(self.subject.render(**context))
            part = "HTML"
            html = self.html.render(**context)
            part = "text"
            text = _BLANK_LINES.sub("\n\n", self.text.render(**context))
        except LiquidError as error:
            # Lines are the creator's only in the subject; the others are laid out.
            line = error_line(error) if part == "subject" else None
            where = f" (line {line})" if line else ""
            raise RenderFailed(f"The {part} part failed{where}: {error_message(error)}") from None
        except Exception as error:
            # Whatever a subscriber's data (any JSON in their fields) makes a filter do fails
            # their message alone, never the batch.
            raise RenderFailed(f"The {part} part failed: {type(error).__name__}: {error}") from None
        return subject, html, text


_compiled_cache: OrderedDict[int, _Compiled] = OrderedDict()


def _compile(frozen: FrozenParts, broadcast_id: int | None = None) -> _Compiled:
    cached = _compiled_cache.get(broadcast_id) if broadcast_id is not None else None
    if cached is not None and cached.frozen == frozen:
        return cached
    try:
        compiled = _Compiled(frozen)
    except LiquidError as error:
        raise RenderFailed(
            f"The frozen broadcast does not compile: {error_message(error)}"
        ) from None
    if broadcast_id is not None:
        _compiled_cache[broadcast_id] = compiled
        _compiled_cache.move_to_end(broadcast_id)
        while len(_compiled_cache) > _COMPILED_CACHE_SIZE:
            _compiled_cache.popitem(last=False)
    return compiled


class BroadcastRenderer:
    """Renders the messages of one frozen broadcast. Compiling happens once per process and
    broadcast (a cache keyed by broadcast id, checked against the frozen parts), so a renderer
    per send batch is cheap. RenderFailed if the broadcast was never frozen."""

    def __init__(self, broadcast) -> None:
        if not broadcast.frozen_html:
            raise RenderFailed(f"Broadcast {broadcast.pk} has not been frozen for sending.")
        frozen = FrozenParts(broadcast.frozen_subject, broadcast.frozen_html, broadcast.frozen_text)
        self._compiled = _compile(frozen, broadcast.pk)
        self._tracking = BroadcastTracking(broadcast_id=broadcast.pk)
        account = broadcast.account
        self._account = {"name": account.name}
        self._skeleton = MessageSkeleton(from_email=account_from_email(account))
        self._message_id_suffix = f".b{broadcast.pk}@{urlparse(settings.SITE_URL).hostname}>"

    def message(self, *, delivery_id: int, subscriber: Subscriber) -> BroadcastEmail:
        """The message for one recipient: From the account, To the subscriber, the unsubscribe
        headers, Message-ID `Delivery.message_id(domain)`. RenderFailed when a limit is hit."""
        if subscriber.is_suppressed:
            raise SubscriberNotMailable(
                f"Subscriber {subscriber.pk} is {subscriber.state}: no email may be sent to them."
            )
        url, headers = unsubscribe_links(subscriber=subscriber)
        subject, html, text = self._compiled.render(
            {
                "subscriber": _subscriber_context(subscriber, self._compiled.keys),
                "unsubscribe_url": url,
                "account": self._account,
            }
        )
        html, text = self._tracking.tracked(delivery_id=delivery_id, html=html, text=text)
        return BroadcastEmail(
            skeleton=self._skeleton,
            subject=subject,
            text=text,
            html=html,
            to=subscriber_to_email(subscriber),
            headers={"Message-ID": f"<d{delivery_id}{self._message_id_suffix}", **headers},
        )


# The editor ----------------------------------------------------------------------------------


def _rendered(
    broadcast, *, context: dict, keys: set[str], design: Design
) -> tuple[str, str, str, list]:
    """The subject and preview text (one line each) and the sanitised body HTML rendered with
    `context` for `design`'s content column, and the template's problems. A template with problems renders as far as it can,
    unknown variables showing as nothing; a body that cannot be laid out (too large or too
    deeply nested) is a problem, and renders as nothing."""
    snippets = account_snippets(broadcast.account)
    problems = _problems(broadcast, keys=keys, sample=context, snippets=snippets)
    text_environment, html_environment = (LAX_TEXT, LAX_HTML) if problems else (TEXT, HTML)
    placeholders = Placeholders(broadcast.body, broadcast.preview_text)
    try:
        body_template = placeholders.restore(
            literal_html(
                creator_html(
                    body=broadcast.body,
                    body_format=broadcast.body_format,
                    placeholders=placeholders,
                    snippets=snippets,
                    content_width=design.inner_width,
                )
            )
        )
        subject = _one_line(text_environment.from_string(broadcast.subject).render(**context))
        preheader = _one_line(
            text_environment.from_string(broadcast.preview_text).render(**context)
        )
        body = sanitise(html_environment.from_string(body_template).render(**context))
    except LiquidError as error:
        problems.append(TemplateProblem("body", None, error_message(error)))
        subject = preheader = body = ""
    except RenderFailed as failed:
        problems.append(TemplateProblem("body", None, str(failed)))
        subject = preheader = body = ""
    except DocumentInvalid:
        subject = preheader = body = ""  # its problems are listed
    return subject, preheader, body, problems


def preview(broadcast, subscriber: Subscriber | None = None) -> Preview:
    """The email as `subscriber` (or a sample subscriber) would get it, from the broadcast's
    current (possibly unsaved) values, with its problems (see _rendered). The HTML is sanitised
    after rendering: safe to show in the app (in an iframe's srcdoc)."""
    account = broadcast.account
    keys = _custom_keys(broadcast)
    subscriber = subscriber or _sample_subscriber(account)
    url, _headers = unsubscribe_test_links(account=account)
    context = _context(subscriber=subscriber, keys=keys, account=account, url=url)
    design = design_for(account=account, key=broadcast.email_template)
    subject, preheader, body, problems = _rendered(
        broadcast, context=context, keys=keys, design=design
    )
    html = email_document(
        account=account,
        design=design,
        web_view_url=web_view_url(broadcast) if broadcast.pk else "",
        body_html=body,
        preheader_html=escape(preheader),
        unsubscribe_url=url,
    )
    text = _BLANK_LINES.sub("\n\n", html_to_text(body) + footer_text(account=account, url=url))
    return Preview(subject=subject, html=html, text=text, problems=problems)


def web_version(broadcast, *, subscribe_url: str = "") -> WebVersion:
    """The message as anyone may see it (its web view, the public archive), from its current
    content: for a sent broadcast, what was sent (its content cannot change once sending
    starts); for a sequence or automation email, what is sent now (an edit refreezes it); for
    a draft, the draft. Rendered for nobody (no subscriber's data: `default` filters apply),
    sanitised after rendering, links as written (untracked), no open pixel, and no unsubscribe
    link: `{{ unsubscribe_url }}` and the footer's link lead to `subscribe_url` (none when
    "")."""
    account = broadcast.account
    keys = _custom_keys(broadcast)
    context = _context(subscriber=_nobody(account), keys=keys, account=account, url=subscribe_url)
    design = design_for(account=account, key=broadcast.email_template)
    subject, preheader, body, _problems = _rendered(
        broadcast, context=context, keys=keys, design=design
    )
    html = email_document(
        account=account,
        design=design,
        body_html=body,
        preheader_html=escape(preheader),
        unsubscribe_url="",
        subscribe_url=subscribe_url,
    )
    return WebVersion(
        subject=subject,
        preview_text=preheader,
        body_html=body,
        html=html,
        image_url=first_image_src(body),
    )


def sample_subject(subject: str, *, account) -> str:
    """The subject as the sample subscriber gets it, on one line: how the creator's pages name a
    broadcast, never as Liquid source. What does not render shows as nothing, and a subject
    that fails altogether gives "". Each distinct subject is rendered once per process (and
    account name), so a page listing many broadcasts costs a lookup per row; `account` is read
    only for a subject with Liquid in it."""
    if "{" not in subject:
        return _one_line(subject)
    return _sample_subject(subject, account.name)


def public_subject(subject: str, *, account) -> str:
    """The subject as the web version shows it (rendered for nobody), on one line: the title
    of an archived broadcast. Cached as sample_subject is."""
    if "{" not in subject:
        return _one_line(subject)
    return _sample_subject(subject, account.name, sample=False)


@functools.lru_cache(maxsize=_SAMPLE_SUBJECTS_CACHED)
def _sample_subject(subject: str, account_name: str, *, sample: bool = True) -> str:
    reader = _sample_subscriber(None) if sample else _nobody(None)
    context = {
        "subscriber": _subscriber_context(reader, ()),
        "unsubscribe_url": "",
        "account": {"name": account_name},
    }
    try:
        return _one_line(LAX_TEXT.from_string(subject).render(**context))
    except Exception:  # noqa: BLE001 - a name for a page: a limit or a filter's error gives none
        return ""


def test_message_build(
    *, broadcast, to_email: str, subscriber: Subscriber | None = None
) -> TextNamesEmail:
    """A test copy of the broadcast's current values for the creator at `to_email`, as the
    preview shows it (sample data unless `subscriber` is given). Its unsubscribe link and
    List-Unsubscribe are a test's: they unsubscribe nobody, and the page they lead to says so.
    RenderFailed when the broadcast has problems."""
    shown = preview(broadcast, subscriber)
    if shown.problems:
        raise RenderFailed(
            "; ".join(
                f"{problem.part}"
                + (f" line {problem.line}" if problem.line else "")
                + f": {problem.message}"
                for problem in shown.problems
            )
        )
    _url, unsubscribe = unsubscribe_test_links(account=broadcast.account)
    message = TextNamesEmail(
        subject=f"[Test] {shown.subject}",
        body=shown.text,
        from_email=account_from_email(broadcast.account),
        to=[to_email],
        headers={
            "Message-ID": make_msgid(domain=urlparse(settings.SITE_URL).hostname),
            **unsubscribe,
        },
    )
    message.attach_alternative(shown.html, "text/html")
    return message


# Not a test, whatever its name says (pytest collects functions named test_* it finds in a test
# module's namespace).
test_message_build.__test__ = False
