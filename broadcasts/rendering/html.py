"""The HTML of a broadcast: the creator's Markdown or HTML, sanitised, in its design's layout.

The body is a Liquid template over Markdown or HTML. Markdown, the sanitiser and the CSS inliner
know nothing of Liquid and would mangle it (quotes escaped, `{% if %}` lines wrapped in
paragraphs), so each Liquid tag and output is swapped for a placeholder word they all leave
alone, and put back at the end:

1. `Placeholders.protect`: each `{{ ... }}` and `{% ... %}` becomes a placeholder; the text of a
   `{% raw %}` block becomes ordinary text (shown literally, as raw would show it).
2. Markdown becomes HTML (CommonMark with tables and strikethrough); a paragraph holding only
   tags (an `{% if %}` on its own line) is unwrapped.
3. nh3 keeps an allowlist of tags, attributes, CSS properties and URL schemes: no script, no
   event handler, no javascript: or data: URL, no form or iframe. What goes in, and what comes
   out, must stay within the size and nesting limits of bounds.py (RenderFailed otherwise):
   nh3 and css-inline are native code that no exception handler can stop.
4. When freezing for sending, the href of each tracked link becomes a placeholder for its marker
   (tracking/links.py), which each recipient's message replaces with its tracked URL
   (`anchor_hrefs_replace`).
5. The design's layout (content.email_templates: templates/broadcasts/email/layout.html drawn
   with a Design's checked values, or a creator's own HTML: `custom_layout`) adds the hidden
   preheader, the "View in browser" link and the footer (the subscriber mail path's footer:
   account name, postal address, unsubscribe link); css-inline moves its stylesheet into style
   attributes, keeping the media queries in a <style>. A sent message ends its body with the
   open pixel.
6. Any `{{` or `{%` left in the text (typed in a postal address, shown by a raw block) is made
   literal, so only the creator's own markup is Liquid; then the placeholders are put back.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from html import unescape

import css_inline
import nh3
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe
from liquid.lex import compile_liquid_rules
from liquid.token import TOKEN_CONTENT
from markdown_it import MarkdownIt
from markdown_it.token import Token

from broadcasts.rendering.bounds import (
    LAYOUT_NESTING,
    LAYOUT_SIZE,
    NESTING_LIMIT,
    SIZE_LIMIT,
    RenderFailed,
    html_bounds_check,
)
from broadcasts.rendering.document import (
    FULL_WIDTH,
    Snippets,
    document_parse,
    document_render,
)
from content.email_templates.builtins import CLASSIC
from content.email_templates.designs import CUSTOM_VARIABLES, Design, custom_html_parts
from subscribers.mail import footer_html

LAYOUT = "broadcasts/email/layout.html"
CUSTOM_LAYOUT = "broadcasts/email/custom.html"
_CUSTOM_VARIABLE = re.compile(
    r"\{\{\s*(" + "|".join(map(re.escape, CUSTOM_VARIABLES)) + r")\s*\}\}"
)

# Liquid's own lexer rules: what they call content is text, everything else is markup, so the
# split is exactly the one Liquid makes (an output ends at the first "}}", even in a string).
_LIQUID_RULES = compile_liquid_rules()
# A `{` that would start Liquid markup.
_LIQUID_START = re.compile(r"\{(?=[{%])")

# `{{ snippet.key }}` in a Markdown or HTML body: the snippet's HTML, put in before Liquid runs.
SNIPPET_REFERENCE = re.compile(r"\{\{-?\s*snippet\.([a-z0-9]+(?:[-_][a-z0-9]+)*)\s*-?\}\}")

_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

_STYLE_PROPERTIES = {
    "background-color",
    "border",
    "border-bottom",
    "border-collapse",
    "border-color",
    "border-left",
    "border-radius",
    "border-right",
    "border-style",
    "border-top",
    "border-width",
    "color",
    "display",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-width",
    "min-width",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "text-align",
    "text-decoration",
    "text-transform",
    "vertical-align",
    "white-space",
    "width",
    "word-break",
}
_TABLE_ATTRIBUTES = {"width", "height", "bgcolor", "valign", "border", "cellpadding", "cellspacing"}
_SANITISER = nh3.Cleaner(
    tags=nh3.ALLOWED_TAGS | {"font", "tfoot"},
    attributes={
        **nh3.ALLOWED_ATTRIBUTES,
        "*": {"style", "align", "dir", "lang", "title"},
        "a": {"href", "hreflang", "name"},
        "img": {"src", "alt", "width", "height", "border"},
        "font": {"color", "face", "size"},
        **{
            tag: nh3.ALLOWED_ATTRIBUTES.get(tag, set()) | _TABLE_ATTRIBUTES
            for tag in ("table", "tr", "td", "th", "tbody", "thead", "tfoot")
        },
        # Layout tables tell screen readers they hold no data (role="presentation").
        "table": nh3.ALLOWED_ATTRIBUTES.get("table", set()) | _TABLE_ATTRIBUTES | {"role"},
    },
    url_schemes={"http", "https", "mailto", "tel"},
    filter_style_properties=_STYLE_PROPERTIES,
)
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
# Invisible characters after the preheader, so that mail clients do not show the start of the
# body after it in the inbox.
_PREHEADER_PADDING = range(40)
# An <a> start tag as the sanitiser writes it (lower case, every value in double quotes, `"` and
# `>` in values escaped), up to its href's value.
_ANCHOR_HREF = re.compile(r'(<a(?:\s+[\w:-]+="[^"]*")*?\s+href=")([^"]*)"')
_IMAGE_SRC = re.compile(r'<img(?:\s+[\w:-]+="[^"]*")*?\s+src="([^"]*)"')
_OPEN_PIXEL = (
    '<img src="{src}" width="1" height="1" alt="" style="display:block;border:0;outline:none;'
    'width:1px;height:1px;margin:0;padding:0;overflow:hidden">'
)


class Placeholders:
    """Liquid markup swapped out for placeholder words (see the module docstring)."""

    def __init__(self, *texts: str) -> None:
        nonce = secrets.token_hex(5)
        while any(nonce in text for text in texts):
            nonce = secrets.token_hex(5)
        self._prefix = f"lq{nonce}n"
        self._pattern = re.compile(rf"{self._prefix}(\d+)z")
        self._markup: list[str] = []

    def add(self, markup: str) -> str:
        self._markup.append(markup)
        return f"{self._prefix}{len(self._markup) - 1}z"

    def protect(self, source: str) -> str:
        def swap(match: re.Match) -> str:
            if match.lastgroup == "RAW":
                return match["raw"]
            if match.lastgroup == TOKEN_CONTENT:
                return match[0]
            return self.add(match[0])

        return _LIQUID_RULES.sub(swap, source)

    def __len__(self) -> int:
        return len(self._markup)

    def markup_since(self, start: int) -> list[str]:
        """The Liquid markup swapped out since there were `start` placeholders, in order."""
        return self._markup[start:]

    def holds_markup(self, text: str) -> bool:
        return self._pattern.search(text) is not None

    def restore(self, text: str) -> str:
        return self._pattern.sub(lambda match: self._markup[int(match[1])], text)

    def _only_tags(self, text: str) -> bool:
        indexes = [int(i) for i in self._pattern.findall(text)]
        return all(self._markup[i].startswith("{%") for i in indexes)

    def tag_lines_apart(self, markdown: str) -> str:
        """Blank lines around each line of Markdown that holds only Liquid tags, so that an
        `{% endif %}` under a list is not read as more of the list's last item."""

        def apart(match: re.Match) -> str:
            return f"\n{match[0]}\n" if self._only_tags(match[0]) else match[0]

        return re.sub(rf"(?m)^[ \t]*(?:{self._prefix}\d+z[ \t]*)+$", apart, markdown)

    def unwrap_tag_paragraphs(self, html: str) -> str:
        """`<p>{% if x %}</p>` (a tag on a line of its own in Markdown) becomes the bare tag."""

        def unwrap(match: re.Match) -> str:
            return match[1].strip() + "\n" if self._only_tags(match[1]) else match[0]

        return re.sub(rf"<p>\s*((?:{self._prefix}\d+z\s*)+)</p>\n?", unwrap, html)


def creator_html(
    *,
    body: str,
    body_format: str,
    placeholders: Placeholders,
    snippets: Snippets | None = None,
    content_width: int = FULL_WIDTH,
) -> str:
    """The creator's body as sanitised HTML, its Liquid markup still swapped out, its snippets
    expanded from `snippets` (left out when None), a visual body's images at most
    `content_width` pixels wide (the design's column). RenderFailed when it is too large or
    too deeply nested (bounds.py); DocumentInvalid for a visual body that breaks the schema."""
    if body_format == "visual":
        rendered = document_render(
            document_parse(body),
            placeholders=placeholders,
            snippets=snippets,
            content_width=content_width,
        )
        return sanitise(rendered.html)
    body, references = _snippet_references_swap(body, placeholders)
    protected = placeholders.protect(body)
    if body_format == "markdown":
        protected = placeholders.tag_lines_apart(protected)
        html = placeholders.unwrap_tag_paragraphs(_markdown_html(protected))
    else:
        html = protected
    if references:
        html = _snippet_references_insert(html, references, placeholders, snippets)
    return sanitise(html)


def snippet_references(body: str) -> list[str]:
    """The keys of the `{{ snippet.key }}` outputs in a Markdown or HTML body, once each."""
    return list(dict.fromkeys(match[1] for match in SNIPPET_REFERENCE.finditer(body)))


def _snippet_references_swap(body: str, placeholders: Placeholders) -> tuple[str, dict]:
    """`body` with each `{{ snippet.key }}` swapped for a word of its own, and {word: key}."""
    references: dict[str, str] = {}

    def swap(match: re.Match) -> str:
        word = placeholders.add("")
        references[word] = match[1]
        return word

    return SNIPPET_REFERENCE.sub(swap, body), references


def _snippet_references_insert(
    html: str, references: dict[str, str], placeholders: Placeholders, snippets: Snippets | None
) -> str:
    """Each word of `references` replaced by its snippet's HTML (nothing when the snippet is
    unknown, or without `snippets`); a paragraph holding only the word (a Markdown line of its
    own) is replaced whole. The caller sanitises the result."""
    pattern = re.compile(rf"<p>\s*({'|'.join(references)})\s*</p>|{'|'.join(references)}")
    written: dict[str, str] = {}

    def insert(match: re.Match) -> str:
        key = references[match[1] or match[0]]
        if key not in written:
            document = snippets.document(key) if snippets is not None else None
            written[key] = (
                document_render(document, placeholders=placeholders, snippets=snippets).html
                if document is not None
                else ""
            )
        return written[key]

    return pattern.sub(insert, html)


def _markdown_html(markdown: str) -> str:
    """The Markdown as HTML. RenderFailed, before the HTML is written, when it would be far too
    large: a reference link's URL is written out again at each of its uses, so a short text
    can stand for a huge one."""
    environment: dict = {}
    tokens = _MARKDOWN.parse(markdown, environment)
    if _tokens_size(tokens) > SIZE_LIMIT:
        raise RenderFailed(
            f"The body would be more than {SIZE_LIMIT:,} characters of HTML; at most "
            f"{SIZE_LIMIT:,} can be sent."
        )
    return _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, environment)


def _tokens_size(tokens: list[Token]) -> int:
    """A lower bound of the number of characters of HTML that `tokens` render to: the text
    and attribute values they hold (an inline token's text is its children's)."""
    return sum(
        _tokens_size(token.children)
        if token.children
        else len(token.content) + sum(len(str(value)) for value in token.attrs.values())
        for token in tokens
    )


def sanitise(html: str) -> str:
    """`html` through the allowlist. RenderFailed when it, or what the sanitiser makes of it,
    is too large or too deeply nested (bounds.py): the check before nh3 keeps its time in
    bounds, the exact one after it keeps what reaches css-inline within the limits."""
    html_bounds_check(html)
    clean = _SANITISER.clean(html)
    html_bounds_check(clean, as_written=True)
    return clean


def anchor_hrefs_replace(html: str, replace: Callable[[str], str | None]) -> str:
    """The sanitiser's `html` with the href of each <a> changed to what `replace` returns for its
    URL (as a browser reads it: unescaped and trimmed), or left alone when it returns None."""

    def swap(match: re.Match) -> str:
        new = replace(unescape(match[2]).strip())
        return match[0] if new is None else f'{match[1]}{escape(new)}"'

    return _ANCHOR_HREF.sub(swap, html)


def email_document(
    *,
    account,
    body_html: str,
    preheader_html: str,
    unsubscribe_url: str,
    design: Design = CLASSIC,
    web_view_url: str = "",
    open_pixel_url: str = "",
    subscribe_url: str | None = None,
) -> str:
    """The whole email: the design's layout (content.email_templates) around the preheader,
    body and footer, with its CSS inlined; a "View in browser" link at the top when
    `web_view_url` is given and the design shows one; the open pixel at the end when
    `open_pixel_url` is given. A web version (`subscribe_url` given, "" for none) has no
    unsubscribe link: its footer links to subscribe_url instead. `body_html` is the
    sanitiser's; the URLs are written escaped. RenderFailed if the email is too large or too
    deeply nested all the same (bounds.py)."""
    if subscribe_url is None:
        footer = footer_html(account=account, url=unsubscribe_url, color=design.muted_color)
    else:
        footer = footer_html(
            account=account, url=subscribe_url, link_text="Subscribe", color=design.muted_color
        )
        unsubscribe_url = subscribe_url
    if design.custom_html:
        body, footer_needed = custom_layout(
            design,
            account=account,
            body_html=body_html,
            unsubscribe_url=unsubscribe_url,
            web_view_url=web_view_url,
        )
        context = {"body": mark_safe(body), "footer": mark_safe(footer) if footer_needed else ""}
        layout = CUSTOM_LAYOUT
    else:
        footer_inside = design.footer_placement == "inside"
        header = ""
        if design.header == "text":
            header = design.header_text or account.name
        elif design.header == "image":
            header = design.header_image_alt or account.name
        context = {
            "design": design,
            "body": mark_safe(body_html),
            "footer": mark_safe(footer),
            "font": mark_safe(design.font_stack),
            "padding": 32 if design.card else 16,
            "header": header,
            "footer_inside": footer_inside,
            "body_radius": f"{0 if header else 6}px {0 if header else 6}px "
            f"{0 if footer_inside else 6}px {0 if footer_inside else 6}px",
            "web_view_url": web_view_url if design.web_view_link else "",
        }
        layout = LAYOUT
    document = render_to_string(
        layout,
        {
            **context,
            "preheader": mark_safe(preheader_html),
            "preheader_padding": _PREHEADER_PADDING,
        },
    )
    html_bounds_check(
        document,
        what="The email",
        nesting_limit=NESTING_LIMIT + LAYOUT_NESTING,
        size_limit=SIZE_LIMIT + LAYOUT_SIZE,
        as_written=True,
    )
    html = _INLINER.inline(document)
    if open_pixel_url:
        end = html.rindex("</body>")
        html = html[:end] + _OPEN_PIXEL.format(src=escape(open_pixel_url)) + html[end:]
    return html


def first_image_src(html: str) -> str:
    """The src of the first http(s) image of the sanitiser's `html` ("" when none): what
    link previews (og:image) show of an email."""
    for match in _IMAGE_SRC.finditer(html):
        src = unescape(match[1]).strip()
        if src.startswith(("https://", "http://")):
            return src
    return ""


def custom_layout(
    design: Design, *, account, body_html: str, unsubscribe_url: str, web_view_url: str
) -> tuple[str, bool]:
    """A custom template's HTML with `body_html` in place of its {{ message_content }}, and
    whether the standard footer must follow it (unless the template has both its own
    unsubscribe link and the postal address: the law wants both in every email).

    1. Its variables become placeholder words, and its <style> blocks are set apart.
    2. The CSS is inlined into the template alone (css_inline.inline_fragment, within
       bounds), and the result sanitised as any creator HTML (no script, no event handler, no
       property outside the allowlist): no rule of it reaches the content or the footer,
       which are put in afterwards.
    3. The variables' values, escaped, replace their placeholders; the body replaces the
       content's, which must stand between tags (RenderFailed otherwise)."""
    source, css = custom_html_parts(design.custom_html)
    placeholders = Placeholders(source, body_html)
    values = {
        "unsubscribe_url": escape(unsubscribe_url),
        "web_view_url": escape(web_view_url),
        "account.name": escape(account.name),
        "account.postal_address": escape(
            ", ".join(line.strip() for line in account.postal_address.splitlines() if line.strip())
        ),
    }
    words: dict[str, str] = {}

    def swap(match: re.Match) -> str:
        name = match[1]
        words.setdefault(name, placeholders.add(name))
        return words[name]

    html = _CUSTOM_VARIABLE.sub(swap, source)
    if css:
        html_bounds_check(html, what="The template")
        html = css_inline.inline_fragment(html, css)
    html = sanitise(html)
    content = words["message_content"]
    if html.count(content) != 1 or re.search(rf"<[^>]*{content}", html):
        raise RenderFailed(
            "The template must have {{ message_content }} once, between tags (not inside one)."
        )
    for name, word in words.items():
        if name != "message_content":
            html = html.replace(word, values[name])
    footer_needed = not {"unsubscribe_url", "account.postal_address"} <= words.keys()
    return html.replace(content, body_html), footer_needed


def preheader_html(text: str, placeholders: Placeholders) -> str:
    """The preview text, escaped for HTML, its Liquid markup swapped out."""
    return escape(placeholders.protect(text))


def literal_html(html: str) -> str:
    """`html` in which no `{{` or `{%` starts Liquid markup (they show as typed)."""
    return _LIQUID_START.sub("&#123;", html)


def literal_text(text: str) -> str:
    """`text` in which no `{{` or `{%` starts Liquid markup (they show as typed)."""
    return _LIQUID_START.sub('{{ "{" }}', text)
