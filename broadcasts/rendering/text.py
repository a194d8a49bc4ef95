"""The plain-text part of an email, written from its HTML.

Paragraphs and headings become blocks separated by a blank line, list items "- item" or
"1. item" (indented when nested), table rows one line each, a link "text (url)" unless the text
already is the url, an image its alt text. Whatever is hidden with display:none (the preheader)
and the contents of head, style and script are left out. Text inside <pre> keeps its spacing.
A URL given a replacement in `links` (its tracked URL) is shown as that, also where the link's
text is the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser

_BLOCKS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "ul",
}
_LINES = {"tr", "li", "caption"}
_SKIPPED = {"head", "script", "style", "template", "title"}
_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
_SPACES = re.compile(r"[ \t\n\r\f\v]+")
_HIDDEN = re.compile(r"display\s*:\s*none", re.IGNORECASE)


class _TextWriter(HTMLParser):
    def __init__(self, replaced: Mapping[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.replaced = replaced
        self.out: list[str] = []
        # Newlines owed before the next text: 1 ends a line, 2 leaves a blank line.
        self.owed = 0
        self.at_line_start = True
        # Just after a list marker: the item's first block starts on the marker's line.
        self.after_marker = False
        self.skip_depth = 0
        self.pre_depth = 0
        self.lists: list[list] = []  # [tag, next number]
        self.links: list[tuple[str, int]] = []  # (href, len(out) when the link opened)

    # Output ----------------------------------------------------------------------------------

    def _owe(self, newlines: int) -> None:
        if self.out and not self.after_marker:
            self.owed = max(self.owed, newlines)

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.owed:
            self.out.append("\n" * self.owed)
            self.owed, self.at_line_start = 0, True
        if self.at_line_start and self.lists and not self.pre_depth:
            self.out.append("  " * len(self.lists))
        self.out.append(text)
        self.at_line_start, self.after_marker = text.endswith("\n"), False

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            self._write(data)
            return
        text = _SPACES.sub(" ", data)
        if self.at_line_start or self.owed or self.out and self.out[-1].endswith(" "):
            text = text.lstrip(" ")
        self._write(text)

    # Tags ------------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip_depth:
            if tag not in _VOID:
                self.skip_depth += 1
            return
        attributes = dict(attrs)
        if tag in _SKIPPED or _HIDDEN.search(attributes.get("style") or ""):
            if tag not in _VOID:
                self.skip_depth = 1
            return
        if tag in ("ul", "ol"):
            self._owe(1 if self.lists else 2)
            self.lists.append([tag, int(attributes.get("start") or 1)])
        elif tag == "li":
            self._owe(1)
            marker = "- "
            if self.lists and self.lists[-1][0] == "ol":
                marker = f"{self.lists[-1][1]}. "
                self.lists[-1][1] += 1
            self._write_marker(marker)
        elif tag in _BLOCKS:
            self._owe(2)
            if tag == "hr":
                self._write("----------")
                self._owe(2)
            elif tag == "pre":
                self.pre_depth += 1
        elif tag in _LINES:
            self._owe(1)
        elif tag in ("td", "th"):
            if not self.at_line_start and not self.owed:
                self._write(" ")
        elif tag == "br":
            self.out.append("\n")
            self.at_line_start, self.owed = True, 0
        elif tag == "a":
            self.links.append((attributes.get("href") or "", len(self.out)))
        elif tag == "img":
            self.handle_data(attributes.get("alt") or "")

    def _write_marker(self, marker: str) -> None:
        # The marker sits at the list's indentation, the item's text right after it.
        if self.owed:
            self.out.append("\n" * self.owed)
            self.owed = 0
        self.out.append("  " * (len(self.lists) - 1) + marker)
        self.at_line_start, self.after_marker = False, True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip_depth:
            if tag not in _VOID:
                self.skip_depth -= 1
            return
        if tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._owe(1 if self.lists else 2)
        elif tag == "li" or tag in _LINES:
            self.after_marker = False
            self._owe(1)
        elif tag in _BLOCKS:
            if tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)
            self._owe(2)
        elif tag == "a" and self.links:
            self._link_end(*self.links.pop())

    def _link_end(self, href: str, start: int) -> None:
        href = href.strip()
        text = "".join(self.out[start:])
        label = text.strip()
        if not href or href.startswith("#"):
            return
        replacement = self.replaced.get(href)
        shown = href.removeprefix("mailto:")
        if label in (href, shown):
            if replacement is not None:
                at = text.rindex(label)
                pieces = (text[:at], replacement, text[at + len(label) :])
                self.out[start:] = [piece for piece in pieces if piece]
            return
        shown = replacement or shown
        if not label:
            self._write(shown)
        else:
            self._write(f" ({shown})" if not self.out[-1].endswith(" ") else f"({shown})")


def html_to_text(html: str, links: Mapping[str, str] | None = None) -> str:
    """The readable text of `html` (see the module docstring)."""
    writer = _TextWriter(links or {})
    writer.feed(html)
    writer.close()
    lines = "".join(writer.out).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")
