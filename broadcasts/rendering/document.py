"""The visual editor's email document: TipTap (ProseMirror) JSON, checked against its schema and
written as email-safe HTML.

The schema is the contract with the editor's JavaScript (the DOCUMENT.md of issue 13): a "doc"
holding blocks (paragraph, heading, lists, blockquote, codeBlock, horizontalRule, image, button,
spacer, snippet), text with marks (bold, italic, strike, code, link) and hard breaks.
`document_parse` refuses whatever breaks it (an unknown node, an attribute not listed or of the
wrong type, a URL that is not http(s) or mailto, more than MAX_BLOCKS blocks, nesting deeper
than MAX_DEPTH) with every problem and where it is: DocumentInvalid.

`document_render` writes the HTML once per email (when freezing, and in the preview), never per
recipient:

1. Layout is tables, as Outlook's Word engine needs: a button is a table whose cell has the
   colour as bgcolor and background-color (dark mode inverts nothing left transparent under it),
   an image sits in a cell aligned by its align attribute, with its width attribute and
   max-width:100%;height:auto, and always an alt; a spacer is a cell of fixed height. Text blocks
   carry inline styles (the layout's CSS inliner adds the rest); the document's layout,
   "center" or "left", is the text-align of paragraphs and headings that set none.
2. Every text and attribute is escaped; its Liquid markup is first swapped out by the
   broadcast's `Placeholders`, so `{{ subscriber.first_name | default: "friend" }}` survives
   and is rendered per recipient by the compiled template.
3. A snippet block is replaced by the current blocks of the account's snippet of that key
   (`Snippets`), recursively: a snippet met again inside itself, nested deeper than
   SNIPPET_NESTING, unknown or broken renders nothing and is recorded in `Snippets.problems`;
   at most MAX_EXPANDED_BLOCKS blocks are written in all (RenderFailed past that), so snippets
   repeating snippets cannot multiply the work.

The result goes through the sanitiser like any body (html.creator_html).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.utils.html import escape

from broadcasts.rendering.bounds import RenderFailed

MAX_BLOCKS = 500
MAX_DEPTH = 8
# The JSON's length, the editor form's limit on any body.
MAX_DOCUMENT_LENGTH = 200_000
# Snippets within snippets within ... a body.
SNIPPET_NESTING = 4
MAX_EXPANDED_BLOCKS = 5_000

LAYOUTS = ("center", "left")
ALIGNS = ("left", "center", "right")
FULL_WIDTH = 600
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_KEY = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_LIQUID_START = re.compile(r"\{[{%]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif"
MONOSPACE = "Menlo,Consolas,'Courier New',monospace"
LINK_COLOUR = "#2563eb"
_TABLE = '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'


class DocumentInvalid(ValueError):
    """The document breaks the schema; `problems` says where and how, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Document:
    layout: str
    # Top-level blocks, checked, every attribute present (defaults filled in).
    blocks: tuple[dict, ...]


class RenderedDocument(NamedTuple):
    html: str
    # Per top-level block: where it is ("Block 3 (paragraph)") and the Liquid markup its HTML
    # holds, in order (what broadcast_problems checks, located by block).
    liquid: list[tuple[str, list[str]]]


# Checking -------------------------------------------------------------------------------------


def _url(value: Any, schemes: tuple[str, ...]) -> bool:
    if not isinstance(value, str) or _CONTROL.search(value):
        return False
    if "mailto" in schemes and value.lower().startswith("mailto:"):
        return len(value) > len("mailto:")
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in schemes and bool(parts.netloc)


def _href(value: Any) -> str | None:
    if isinstance(value, str) and _LIQUID_START.match(value) and not _CONTROL.search(value):
        return None
    if _url(value, ("http", "https", "mailto")):
        return None
    return "must be an http, https or mailto URL (or Liquid such as {{ unsubscribe_url }})"


def _optional_href(value: Any) -> str | None:
    return None if value is None else _href(value)


def _src(value: Any) -> str | None:
    return None if _url(value, ("http", "https")) else "must be an http or https URL"


def _choice(*choices) -> Callable[[Any], str | None]:
    shown = ", ".join("null" if choice is None else f'"{choice}"' for choice in choices)

    def check(value: Any) -> str | None:
        return None if value in choices and not isinstance(value, bool) else f"must be {shown}"

    return check


def _integer(low: int, high: int | None, *, nullable: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if nullable and value is None:
            return None
        if type(value) is int and value >= low and (high is None or value <= high):
            return None
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        return f"must be a whole number {bounds}" + (" or null" if nullable else "")

    return check


def _text(low: int, high: int, *, nullable: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if nullable and value is None:
            return None
        if isinstance(value, str) and low <= len(value) <= high:
            return None
        return f"must be text of {low} to {high} characters" + (" or null" if nullable else "")

    return check


def _colour(value: Any) -> str | None:
    ok = isinstance(value, str) and _COLOUR.fullmatch(value)
    return None if ok else 'must be a colour written "#rrggbb"'


def _key(value: Any) -> str | None:
    ok = isinstance(value, str) and len(value) <= 100 and _KEY.fullmatch(value)
    return None if ok else "must be a snippet's key, such as sign-off"


_REQUIRED = object()
_ALIGN = ("textAlign", None, _choice("left", "center", "right", None))
# Per node type: its attributes (name, default or _REQUIRED, check) and what it may hold.
_BLOCKS: dict[str, tuple[tuple, str | None]] = {
    "paragraph": ((_ALIGN,), "inline"),
    "heading": ((("level", 1, _choice(1, 2, 3)), _ALIGN), "inline"),
    "bulletList": ((), "items"),
    "orderedList": ((("start", 1, _integer(1, None)),), "items"),
    "listItem": ((), "item"),
    "blockquote": ((), "quote"),
    "codeBlock": ((("language", None, _text(0, 100, nullable=True)),), "code"),
    "horizontalRule": ((), None),
    "image": (
        (
            ("src", _REQUIRED, _src),
            ("alt", "", _text(0, 1000)),
            ("width", None, _integer(16, FULL_WIDTH, nullable=True)),
            ("href", None, _optional_href),
            ("imageId", None, _integer(1, None, nullable=True)),
            ("align", "center", _choice(*ALIGNS)),
        ),
        None,
    ),
    "button": (
        (
            ("text", _REQUIRED, _text(1, 200)),
            ("href", _REQUIRED, _href),
            ("background", "#2563eb", _colour),
            ("color", "#ffffff", _colour),
            ("align", "center", _choice(*ALIGNS)),
        ),
        None,
    ),
    "spacer": ((("height", 24, _integer(8, 96)),), None),
    "snippet": ((("key", _REQUIRED, _key),), None),
}
# What each kind of content may hold.
_HOLDS = {
    "doc": set(_BLOCKS) - {"listItem"},
    "items": {"listItem"},
    "item": {"paragraph", "bulletList", "orderedList"},
    "quote": {"paragraph", "heading", "bulletList", "orderedList"},
}
_MARKS = {"bold", "italic", "strike", "code", "link"}


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.blocks = 0

    def problem(self, where: str, message: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(f"{where}: {message}" if where else message)

    def attrs(self, node: dict, specs: tuple, where: str) -> dict:
        given = node.get("attrs", {})
        if given is None:
            given = {}
        if not isinstance(given, dict):
            self.problem(where, "attrs must be an object")
            return {}
        names = {spec[0] for spec in specs}
        for name in given:
            if name not in names:
                self.problem(where, f"unknown attribute {name!r}")
        checked = {}
        for name, default, check in specs:
            if name not in given:
                if default is _REQUIRED:
                    self.problem(where, f"{name} is required")
                checked[name] = None if default is _REQUIRED else default
                continue
            why = check(given[name])
            if why:
                self.problem(where, f"{name} {why}")
            checked[name] = given[name]
        return checked

    def keys(self, node: dict, allowed: set[str], where: str) -> None:
        for name in node:
            if name not in allowed:
                self.problem(where, f"unknown property {name!r}")

    def content(self, node: dict, where: str) -> list:
        content = node.get("content", [])
        if not isinstance(content, list):
            self.problem(where, "content must be a list")
            return []
        return content

    def blocks_of(self, nodes: list, holds: str, where: str, depth: int) -> list[dict]:
        checked = []
        for number, node in enumerate(nodes, 1):
            kind = node.get("type") if isinstance(node, dict) else None
            label = f"{where}.{number}" if where else f"Block {number}"
            if kind not in _BLOCKS:
                shown = f" {kind!r}" if isinstance(kind, str) else ""
                self.problem(label, f"unknown block type{shown[:60]}")
                continue
            if kind not in _HOLDS[holds]:
                self.problem(f"{label} ({kind})", f"a {kind} cannot be here")
                continue
            block = self.block(node, kind, f"{label} ({kind})", label, depth)
            if block is not None:
                checked.append(block)
        return checked

    def block(self, node: dict, kind: str, where: str, label: str, depth: int) -> dict | None:
        self.blocks += 1
        if self.blocks > MAX_BLOCKS:
            if self.blocks == MAX_BLOCKS + 1:
                self.problem("", f"The document has more than {MAX_BLOCKS} blocks.")
            return None
        if depth > MAX_DEPTH:
            self.problem(where, f"nested more than {MAX_DEPTH} levels deep")
            return None
        specs, holds = _BLOCKS[kind]
        self.keys(node, {"type", "attrs", "content"}, where)
        block = {"type": kind, "attrs": self.attrs(node, specs, where)}
        content = self.content(node, where)
        if holds is None:
            if content:
                self.problem(where, f"a {kind} holds no content")
        elif holds in ("inline", "code"):
            block["content"] = self.inline(content, where, code=holds == "code")
        else:
            if not content:
                self.problem(where, f"a {kind} must hold at least one block")
            block["content"] = self.blocks_of(content, holds, label, depth + 1)
        return block

    def inline(self, nodes: list, where: str, *, code: bool) -> list[dict]:
        checked = []
        for number, node in enumerate(nodes, 1):
            kind = node.get("type") if isinstance(node, dict) else None
            at = f"{where}, inline {number}"
            if kind == "hardBreak" and not code:
                self.keys(node, {"type"}, at)
                checked.append({"type": "hardBreak"})
            elif kind == "text":
                self.keys(node, {"type", "text", "marks"}, at)
                text = node.get("text")
                if not isinstance(text, str):
                    self.problem(at, "text must be a string")
                    continue
                marks = node.get("marks", [])
                if code and marks:
                    self.problem(at, "text in a code block has no marks")
                checked.append({"type": "text", "text": text, "marks": self.marks(marks, at)})
            else:
                shown = f" {kind!r}" if isinstance(kind, str) else ""
                self.problem(at, f"unknown inline node{shown[:60]}")
        return checked

    def marks(self, marks: Any, where: str) -> list[dict]:
        if not isinstance(marks, list):
            self.problem(where, "marks must be a list")
            return []
        checked = []
        for mark in marks:
            kind = mark.get("type") if isinstance(mark, dict) else None
            if kind not in _MARKS:
                shown = f" {kind!r}" if isinstance(kind, str) else ""
                self.problem(where, f"unknown mark{shown[:60]}")
                continue
            self.keys(mark, {"type", "attrs"}, where)
            specs = (("href", _REQUIRED, _href),) if kind == "link" else ()
            checked.append({"type": kind, "attrs": self.attrs(mark, specs, f"{where} ({kind})")})
        return checked


def document_parse(source: str) -> Document:
    """The document in `source` (JSON text), checked against the schema and with every
    attribute's default filled in; an empty text is an empty document. DocumentInvalid lists
    what is wrong, and where."""
    if not source.strip():
        return Document(layout="center", blocks=())
    if len(source) > MAX_DOCUMENT_LENGTH:
        raise DocumentInvalid(
            [f"The document is longer than {MAX_DOCUMENT_LENGTH:,} characters of JSON."]
        )
    try:
        data = json.loads(source)
    except RecursionError:
        raise DocumentInvalid(["The document is nested too deeply."]) from None
    except ValueError as error:
        raise DocumentInvalid([f"The document is not valid JSON ({error})."]) from None
    return document_check(data)


def document_check(data: Any) -> Document:
    """`data` (decoded JSON) as a Document; DocumentInvalid when it breaks the schema."""
    if not isinstance(data, dict) or data.get("type") != "doc":
        raise DocumentInvalid(['The document must be an object of type "doc".'])
    checker = _Checker()
    checker.keys(data, {"type", "attrs", "content"}, "The document")
    attrs = checker.attrs(data, (("layout", "center", _choice(*LAYOUTS)),), "The document")
    blocks = checker.blocks_of(checker.content(data, "The document"), "doc", "", 1)
    if checker.problems:
        raise DocumentInvalid(checker.problems)
    return Document(layout=attrs["layout"], blocks=tuple(blocks))


def document_snippet_keys(document: Document) -> list[str]:
    """The keys of the snippets the document's blocks name, once each, in order."""
    keys = [block["attrs"]["key"] for block in document.blocks if block["type"] == "snippet"]
    return list(dict.fromkeys(keys))


# Snippets ------------------------------------------------------------------------------------


class Snippets:
    """An account's snippets for one rendering, each read once through `load(key)` (its body,
    the document JSON, or None when no snippet has that key); `problems` says which were
    unknown, broken or included within themselves."""

    def __init__(self, load: Callable[[str], str | None]) -> None:
        self._load = load
        self._documents: dict[str, Document | None] = {}
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def document(self, key: str) -> Document | None:
        if key not in self._documents:
            body = self._load(key)
            document = None
            if body is None:
                self.problem(f"Unknown snippet {key}")
            else:
                try:
                    document = document_parse(body)
                except DocumentInvalid as invalid:
                    self.problem(f"Snippet {key} is broken: {invalid.problems[0]}")
            self._documents[key] = document
        return self._documents[key]


# Writing -------------------------------------------------------------------------------------


def _style(**properties: str | int) -> str:
    return ";".join(f"{name.replace('_', '-')}:{value}" for name, value in properties.items())


_PARAGRAPH = "margin:0 0 16px"
_HEADINGS = {1: "28px", 2: "22px", 3: "18px"}


class _Writer:
    def __init__(
        self, *, layout: str, placeholders, snippets: Snippets | None, content_width: int
    ) -> None:
        self.layout = layout
        self.content_width = content_width
        self.placeholders = placeholders
        self.snippets = snippets
        self.chain: list[str] = []
        self.written = 0

    def text(self, value: str) -> str:
        return escape(self.placeholders.protect(value))

    def block(self, block: dict, *, in_item: bool = False) -> str:
        self.written += 1
        if self.written > MAX_EXPANDED_BLOCKS:
            raise RenderFailed(
                f"With its snippets, the body has more than {MAX_EXPANDED_BLOCKS:,} blocks."
            )
        return getattr(self, f"_{block['type']}")(block, block["attrs"], in_item)

    def blocks(self, blocks, *, in_item: bool = False) -> str:
        return "".join(self.block(block, in_item=in_item) for block in blocks)

    def inline(self, nodes: list[dict]) -> str:
        html = []
        for node in nodes:
            if node["type"] == "hardBreak":
                html.append("<br>")
                continue
            piece = self.text(node["text"])
            marks = {mark["type"]: mark["attrs"] for mark in node["marks"]}
            if "code" in marks:
                style = _style(font_family=MONOSPACE, font_size="14px", background_color="#f6f8fa")
                piece = f'<code style="{style}">{piece}</code>'
            for mark, tag in (("strike", "s"), ("italic", "em"), ("bold", "strong")):
                if mark in marks:
                    piece = f"<{tag}>{piece}</{tag}>"
            if "link" in marks:
                href = self.text(marks["link"]["href"])
                style = _style(color=LINK_COLOUR, text_decoration="underline")
                piece = f'<a href="{href}" style="{style}">{piece}</a>'
            html.append(piece)
        return "".join(html)

    def align(self, attrs: dict) -> str:
        return attrs.get("textAlign") or self.layout

    def _paragraph(self, block: dict, attrs: dict, in_item: bool) -> str:
        margin = "margin:8px 0 0" if in_item else _PARAGRAPH
        inner = self.inline(block["content"]) or "&nbsp;"
        return f'<p style="{margin};text-align:{self.align(attrs)}">{inner}</p>'

    def _heading(self, block: dict, attrs: dict, in_item: bool) -> str:
        level = attrs["level"]
        style = _style(
            margin="24px 0 12px",
            font_size=_HEADINGS[level],
            line_height="1.25",
            font_weight="bold",
            text_align=self.align(attrs),
        )
        return f'<h{level} style="{style}">{self.inline(block["content"])}</h{level}>'

    def _list(self, tag: str, block: dict, start: str, in_item: bool) -> str:
        style = _style(margin="0" if in_item else "0 0 16px", padding="0 0 0 24px")
        items = self.blocks(block["content"])
        return f'<{tag}{start} style="{style};text-align:left">{items}</{tag}>'

    def _bulletList(self, block: dict, attrs: dict, in_item: bool) -> str:  # noqa: N802
        return self._list("ul", block, "", in_item)

    def _orderedList(self, block: dict, attrs: dict, in_item: bool) -> str:  # noqa: N802
        start = f' start="{attrs["start"]}"' if attrs["start"] != 1 else ""
        return self._list("ol", block, start, in_item)

    def _listItem(self, block: dict, attrs: dict, in_item: bool) -> str:  # noqa: N802
        # The item's first paragraph is its text (no paragraph of its own: no gap after the
        # marker, one line in the text part); later blocks follow on lines of their own.
        first, *rest = block["content"]
        inner = (
            self.inline(first["content"])
            if first["type"] == "paragraph"
            else self.block(first, in_item=True)
        )
        return f'<li style="margin:0 0 4px">{inner}{self.blocks(rest, in_item=True)}</li>'

    def _blockquote(self, block: dict, attrs: dict, in_item: bool) -> str:
        style = _style(
            margin="0 0 16px",
            padding="0 0 0 12px",
            border_left="4px solid #e5e7eb",
            color="#4b5563",
            text_align="left",
        )
        return f'<blockquote style="{style}">{self.blocks(block["content"])}</blockquote>'

    def _codeBlock(self, block: dict, attrs: dict, in_item: bool) -> str:  # noqa: N802
        style = _style(
            margin="0 0 16px",
            padding="12px",
            background_color="#f6f8fa",
            color="#1f2328",
            font_family=MONOSPACE,
            font_size="14px",
            line_height="1.45",
            white_space="pre-wrap",
            word_break="break-word",
            text_align="left",
        )
        code = "".join(self.text(node["text"]) for node in block["content"])
        return f'<pre style="{style}"><code>{code}</code></pre>'

    def _horizontalRule(self, block: dict, attrs: dict, in_item: bool) -> str:  # noqa: N802
        style = _style(
            border="0",
            border_top="1px solid #e5e7eb",
            height="1px",
            margin="24px 0",
        )
        return f'<hr style="{style}">'

    def _image(self, block: dict, attrs: dict, in_item: bool) -> str:
        width = min(attrs["width"] or self.content_width, self.content_width)
        style = _style(max_width="100%", height="auto", border="0", text_decoration="none")
        html = (
            f'<img src="{self.text(attrs["src"])}" alt="{self.text(attrs["alt"])}" '
            f'width="{width}" style="{style}">'
        )
        if attrs["href"]:
            html = f'<a href="{self.text(attrs["href"])}">{html}</a>'
        return (
            f'{_TABLE}<tr><td align="{attrs["align"]}" style="padding:0 0 16px">'
            f"{html}</td></tr></table>"
        )

    def _button(self, block: dict, attrs: dict, in_item: bool) -> str:
        background, colour = attrs["background"], attrs["color"]
        cell = _style(background_color=background, border_radius="6px", padding="12px 24px")
        link = _style(
            color=colour,
            background_color=background,
            font_family=FONT,
            font_size="16px",
            font_weight="bold",
            line_height="1.2",
            text_decoration="none",
            display="inline-block",
        )
        return (
            f'{_TABLE}<tr><td align="{attrs["align"]}" style="padding:8px 0 24px">'
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0"><tr>'
            f'<td align="center" bgcolor="{background}" style="{cell}">'
            f'<a href="{self.text(attrs["href"])}" style="{link}">{self.text(attrs["text"])}</a>'
            "</td></tr></table></td></tr></table>"
        )

    def _spacer(self, block: dict, attrs: dict, in_item: bool) -> str:
        height = attrs["height"]
        style = _style(height=f"{height}px", font_size="1px", line_height=f"{height}px")
        return f'{_TABLE}<tr><td height="{height}" style="{style}">&nbsp;</td></tr></table>'

    def _snippet(self, block: dict, attrs: dict, in_item: bool) -> str:
        key = attrs["key"]
        if self.snippets is None:
            return ""
        if key in self.chain:
            path = " → ".join([*self.chain[self.chain.index(key) :], key])
            self.snippets.problem(f"Snippet {key} includes itself ({path})")
            return ""
        if len(self.chain) >= SNIPPET_NESTING:
            self.snippets.problem(
                f"Snippet {key} is nested in more than {SNIPPET_NESTING} other snippets"
            )
            return ""
        document = self.snippets.document(key)
        if document is None:
            return ""
        self.chain.append(key)
        try:
            return self.blocks(document.blocks)
        finally:
            self.chain.pop()


def document_render(
    document: Document,
    *,
    placeholders,
    snippets: Snippets | None = None,
    where: str = "Block",
    content_width: int = FULL_WIDTH,
) -> RenderedDocument:
    """The document as email HTML (one line per top-level block), its Liquid swapped out by
    `placeholders` (html.Placeholders), its snippet blocks expanded from `snippets` (left out
    when None). `where` begins each block's location ("Block 3 (image)"). Images are at most
    `content_width` pixels wide (the design's content column): Outlook draws an image at its
    width attribute, whatever the column. RenderFailed when snippets make it too large."""
    writer = _Writer(
        layout=document.layout,
        placeholders=placeholders,
        snippets=snippets,
        content_width=content_width,
    )
    lines = []
    liquid = []
    for number, block in enumerate(document.blocks, 1):
        start = len(placeholders)
        lines.append(writer.block(block))
        name = block["type"]
        if name == "snippet":
            name = f"snippet {block['attrs']['key']}"
        liquid.append((f"{where} {number} ({name})", placeholders.markup_since(start)))
    return RenderedDocument(html="\n".join(line for line in lines if line), liquid=liquid)
