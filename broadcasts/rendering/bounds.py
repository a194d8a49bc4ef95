"""Bounds on the HTML that reaches a native renderer, checked in pure Python before each call.

nh3 (the sanitiser) and css-inline (the CSS inliner) are compiled code. css-inline recurses once
per level of element nesting on the calling thread's stack: markup nested deeply enough
overflows the stack and the process dies of SIGSEGV, which no `except` can catch (the web worker
of a preview; a Celery worker, again at every retry, for a scheduled send). nh3 survives any
depth, but its time grows with the square of the depth, and what it builds can grow with the
square of the markup: formatting elements left open (`<p><b title=1><p><b title=2>...`) are
opened again, all of them, in every later paragraph. So `html_bounds_check` runs before every
call into either and raises RenderFailed for HTML longer than SIZE_LIMIT characters, nesting
elements deeper than NESTING_LIMIT or reopening more than REOPEN_LIMIT of them; and the
creator's body is held to the same limits where it is saved (BroadcastForm) and checked
(broadcast_problems). The limits are far beyond any email layout and far below what breaks
css-inline on a small thread stack (tests/broadcasts/test_render_bounds.py keeps them so).

`html_shape` counts in one pass, the way an HTML parser builds its tree, erring on the deep side
where it cannot follow the parser exactly:

1. Markup is read as the HTML tokenizer reads it: comments, quoted attribute values and the text
   of raw-text elements (style, script, textarea...) hold no elements; a tag that never ends
   swallows the rest. html, head and body tags are ignored (a document has one of each), and so
   are the tags of table parts outside a table, as a parser ignores them.
2. A void element (br, img) holds nothing. Inside svg or math, `<x/>` holds nothing either, and
   only an end tag of the innermost element closes anything.
3. An end tag closes the nearest open element of its name and all inside it, but not past a
   table or a cell (nor, for an inline element, past a block); `</form>` closes a form only when
   nothing else is open inside it.
4. The elements a parser closes by itself are closed: a p before a block, an li before the next
   li, a cell before the next cell, a heading before a heading, and so on.
5. A formatting element (b, font, a...) closed by another element's end is opened again (a
   copy) before the next text or inline tag, until its own end tag comes; only the last three
   alike are kept, and a cell, caption or object starts afresh. Until it is opened again it
   counts as a level, and each copy counts towards REOPEN_LIMIT.

`as_written` skips step 4, for what the sanitiser writes (every element closed where it ends):
that count is the one css-inline's parser cannot exceed when it reads the sanitised HTML again.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from typing import NamedTuple

# Levels of elements in the body. Layouts of tables within tables reach a few dozen.
NESTING_LIMIT = 200
# Characters of HTML in the body: several times the largest email a mail client shows whole.
SIZE_LIMIT = 1_000_000
# Copies of formatting elements a parser opens again (see the module docstring); sloppy but
# ordinary HTML (a <font> left open in each paragraph) makes a few per paragraph.
REOPEN_LIMIT = 20_000
# What the email's layout adds around the body: wrapper tables, the preheader and the footer.
LAYOUT_NESTING = 20
LAYOUT_SIZE = 50_000

_VOID = frozenset(
    {
        "area",
        "base",
        "basefont",
        "bgsound",
        "br",
        "col",
        "embed",
        "frame",
        "hr",
        "image",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
# Elements whose text a parser reads up to their end tag, without elements in it.
_RAW_TEXT = frozenset(
    {"iframe", "noembed", "noframes", "noscript", "script", "style", "textarea", "title", "xmp"}
)
_IGNORED = frozenset({"html", "head", "body"})
_FOREIGN = frozenset({"svg", "math"})
_FORMATTING = frozenset(
    {
        "a",
        "b",
        "big",
        "code",
        "em",
        "font",
        "i",
        "nobr",
        "s",
        "small",
        "strike",
        "strong",
        "tt",
        "u",
    }
)
# Elements a parser treats as structure (its "special" category).
_SPECIAL = frozenset(
    {
        "address",
        "annotation-xml",
        "applet",
        "area",
        "article",
        "aside",
        "base",
        "basefont",
        "bgsound",
        "blockquote",
        "body",
        "br",
        "button",
        "caption",
        "center",
        "col",
        "colgroup",
        "dd",
        "desc",
        "details",
        "dir",
        "div",
        "dl",
        "dt",
        "embed",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "foreignobject",
        "form",
        "frame",
        "frameset",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "head",
        "header",
        "hgroup",
        "hr",
        "html",
        "iframe",
        "img",
        "input",
        "keygen",
        "li",
        "link",
        "listing",
        "main",
        "marquee",
        "menu",
        "meta",
        "mi",
        "mn",
        "mo",
        "ms",
        "mtext",
        "nav",
        "noembed",
        "noframes",
        "noscript",
        "object",
        "ol",
        "p",
        "param",
        "plaintext",
        "pre",
        "script",
        "search",
        "section",
        "select",
        "source",
        "style",
        "summary",
        "table",
        "tbody",
        "td",
        "template",
        "textarea",
        "tfoot",
        "th",
        "thead",
        "title",
        "tr",
        "track",
        "ul",
        "wbr",
        "xmp",
    }
)
# Special elements that an li, dt or dd looks past for the one it closes.
_NOT_ITEM_BOUNDARIES = frozenset({"address", "div", "p"})
# Elements that start afresh the formatting elements to open again (a parser's markers).
_MARKERS = frozenset({"applet", "caption", "marquee", "object", "td", "template", "th"})
# A structural end tag closes nothing beyond these (a parser's scope boundaries)...
_SCOPE = frozenset(
    {
        "annotation-xml",
        "applet",
        "caption",
        "desc",
        "foreignobject",
        "html",
        "marquee",
        "mi",
        "mn",
        "mo",
        "ms",
        "mtext",
        "object",
        "table",
        "td",
        "template",
        "th",
        "title",
    }
)
# ...and in a few cases these too...
_END_SCOPE = {"li": _SCOPE | {"ol", "ul"}, "p": _SCOPE | {"button"}}
# ...and the end tag of a table part stops only at a table. Outside a table a parser ignores
# the tags of table parts.
_TABLE_PARTS = frozenset(
    {"caption", "col", "colgroup", "tbody", "td", "tfoot", "th", "thead", "tr"}
)
_TABLE_SCOPE = frozenset({"html", "table", "template"})
# A start tag of these closes an open p first.
_CLOSES_P = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "hr",
        "li",
        "listing",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "pre",
        "search",
        "section",
        "summary",
        "table",
        "ul",
        "xmp",
    }
)
# A start tag of the key closes the nearest open element named in the first set, looking no
# further than an element named in the second.
_CLOSES = {
    "td": ({"td", "th"}, _TABLE_SCOPE | {"tr"}),
    "th": ({"td", "th"}, _TABLE_SCOPE | {"tr"}),
    "tr": ({"tr"}, _TABLE_SCOPE | {"tbody", "tfoot", "thead"}),
    "tbody": ({"tbody", "tfoot", "thead"}, _TABLE_SCOPE),
    "tfoot": ({"tbody", "tfoot", "thead"}, _TABLE_SCOPE),
    "thead": ({"tbody", "tfoot", "thead"}, _TABLE_SCOPE),
    "button": ({"button"}, _SCOPE),
}
# A start tag of the key closes the innermost special element, other than address, div or p,
# when it is one of these.
_CLOSES_ITEM = {"li": {"li"}, "dd": {"dd", "dt"}, "dt": {"dd", "dt"}}
# A start tag of the key closes the current element when it is one of these.
_CLOSES_CURRENT = {"option": {"option"}, "optgroup": {"option", "optgroup"}}
# Start tags before which a parser does not open closed formatting elements again (blocks,
# tables, raw text); it does before any other, and before text.
_NOT_REOPENING = _CLOSES_P | _TABLE_PARTS | _RAW_TEXT | {"hr", "plaintext", "table"}
# Elements a parser closes by themselves when something else ends or a ruby part begins.
_IMPLIED_END = frozenset({"dd", "dt", "li", "optgroup", "option", "p", "rb", "rp", "rt", "rtc"})
_RUBY_PARTS = {"rb": _IMPLIED_END, "rtc": _IMPLIED_END, "rp": _IMPLIED_END - {"rtc"}}
_RUBY_PARTS["rt"] = _RUBY_PARTS["rp"]
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# A start tag of these acts as its own end tag first (a second <a> ends the first).
_ENDS_ITSELF = frozenset({"a", "nobr"})
# A parser keeps only the last three formatting elements alike (same name and attributes).
_ALIKE_KEPT = 3

_SPACE = "\t\n\f\r "
# The markup of HTML as its tokenizer reads it, first match from a position on:
_MARKUP = re.compile(
    # a comment;
    r"<!--(?:-?>|.*?--!?>)"
    # a bogus comment (<!DOCTYPE>, <?xml?>, </ not followed by a letter), to the next >;
    r"|<(?:!(?!--)|\?|/(?![A-Za-z]))[^>]*+>"
    # a start or end tag: its name, then attributes (a name, and maybe = and a value, quoted or
    # not), up to the first > outside a quoted value; possessive quantifiers, so that a tag
    # that never ends costs one pass over the rest, not a backtracking search;
    rf"|<(/?)([A-Za-z][^{_SPACE}/>]*+)"
    rf"((?:[{_SPACE}/]*+(?:[^{_SPACE}/>][^{_SPACE}/=>]*+"
    rf"(?:[{_SPACE}]*+=[{_SPACE}]*+(?:\"[^\"]*+\"|'[^']*+'|[^{_SPACE}>]++)?)?))*+)"
    rf"([{_SPACE}/]*+)>"
    # or any of those never ending: the rest of the text is in it.
    r"|(?P<unended><[!?/A-Za-z])",
    re.DOTALL,
)


class RenderFailed(Exception):
    """The message could not be rendered (a limit was hit); the text says why, for the
    creator. A recipient's delivery fails alone."""


@functools.cache
def _raw_text_end(name: str) -> re.Pattern:
    return re.compile(rf"</{name}[{_SPACE}/>]", re.IGNORECASE)


class _Shape(NamedTuple):
    depth: int
    reopened: int


class _Formatting:
    """One open formatting element, as a parser keeps it to open it again."""

    __slots__ = ("name", "key", "order", "closed", "gone")

    def __init__(self, name: str, key: tuple, order: int) -> None:
        self.name, self.key, self.order = name, key, order
        self.closed = False  # closed by another element's end: to be opened again
        self.gone = False  # forgotten: its own end tag came, or three alike came after it


class _Segment:
    """The formatting elements since the last marker (a cell, caption or object)."""

    __slots__ = ("alike", "by_name", "closed", "to_reopen")

    def __init__(self) -> None:
        self.alike: dict[tuple, deque[_Formatting]] = {}
        self.by_name: dict[str, list[_Formatting]] = {}
        self.closed = 0
        self.to_reopen: list[_Formatting] = []

    def add(self, entry: _Formatting) -> None:
        alike = self.alike.setdefault(entry.key, deque())
        if len(alike) == _ALIKE_KEPT:
            self.forget(alike.popleft())
        alike.append(entry)
        self.by_name.setdefault(entry.name, []).append(entry)

    def close(self, entry: _Formatting) -> None:
        entry.closed = True
        self.closed += 1
        self.to_reopen.append(entry)

    def last(self, name: str) -> _Formatting | None:
        entries = self.by_name.get(name)
        while entries and entries[-1].gone:
            entries.pop()
        return entries[-1] if entries else None

    def forget(self, entry: _Formatting) -> None:
        if not entry.gone:
            entry.gone = True
            self.closed -= entry.closed
            alike = self.alike[entry.key]
            if entry in alike:
                alike.remove(entry)


class _Tree:
    """The open elements of html_shape's pass (see the module docstring)."""

    def __init__(self, *, as_written: bool) -> None:
        self.as_written = as_written
        # The open elements, innermost last, each with its formatting entry (or None).
        self.names: list[str] = []
        self.entries: list[_Formatting | None] = []
        # Where each name is open among them, innermost last: a lookup costs no walk; and
        # where the special elements are, and those an li, dt or dd does not look past.
        self.open_at: dict[str, list[int]] = {}
        self.special_at: list[int] = []
        self.item_boundary_at: list[int] = []
        self.segments = [_Segment()]
        # How many svg and math elements are open: inside them, other rules apply.
        self.foreign = 0
        self.formatted = 0
        self.reopened = 0

    def depth(self, extra: int = 0) -> int:
        """The depth now (`extra` levels deeper), with the formatting elements to open again."""
        return len(self.names) + extra + self.segments[-1].closed

    def innermost(self, names) -> int:
        return max((self.open_at[name][-1] for name in names if self.open_at.get(name)), default=-1)

    def close_nearest(self, names, boundaries) -> None:
        at = self.innermost(names)
        if at >= 0 and at >= self.innermost(boundaries):
            self.close(at)

    def close(self, at: int) -> None:
        for name, entry in zip(reversed(self.names[at:]), reversed(self.entries[at:]), strict=True):
            self.open_at[name].pop()
            self.foreign -= name in _FOREIGN
            if name in _MARKERS:
                self.segments.pop()
            elif entry is not None and not entry.gone:
                self.segments[-1].close(entry)
        del self.names[at:], self.entries[at:]
        for indexes in (self.special_at, self.item_boundary_at):
            while indexes and indexes[-1] >= at:
                indexes.pop()

    def end(self, name: str) -> None:
        if self.foreign:
            # Inside svg or math only the innermost element is closed, by its own end tag.
            if self.names[-1] == name:
                self.close(len(self.names) - 1)
            return
        if name in _TABLE_PARTS and not self.open_at.get("table"):
            return
        segment = self.segments[-1]
        entry = segment.last(name) if name in _FORMATTING else None
        if entry is not None:
            # The parser's adoption agency: an element closed before is forgotten; an open one
            # is closed with what stands above it, unless a special element does (then that
            # stays open, and the formatting element's copy goes inside it: no fewer levels).
            segment.forget(entry)
            at = self.entries.index(entry) if not entry.closed else -1
            if at >= 0 and not (self.special_at and self.special_at[-1] > at):
                self.close(at)
        elif name in _TABLE_PARTS or name == "table":
            self.close_nearest((name,), _TABLE_SCOPE)
        elif name in _HEADINGS:
            self.close_nearest(_HEADINGS, _SCOPE)
        elif name == "form":
            # A parser takes the form out from among what is open, closing nothing else: that
            # is done here only when the form is innermost (or becomes so).
            if self.open_at.get("form"):
                self.close_implied(_IMPLIED_END)
                if self.names[-1] == "form":
                    self.close(len(self.names) - 1)
        elif name in _SPECIAL:
            self.close_nearest((name,), _END_SCOPE.get(name, _SCOPE))
        else:
            # Any other end tag closes its element unless a special element stands between.
            at = self.innermost((name,))
            if at >= 0 and not (self.special_at and self.special_at[-1] > at):
                self.close(at)

    def close_implied(self, names) -> None:
        while self.names and self.names[-1] in names:
            self.close(len(self.names) - 1)

    def reopen(self) -> None:
        """Opens again the formatting elements closed since the last marker (a parser's
        "reconstruct the active formatting elements"), in the order they were opened."""
        segment = self.segments[-1]
        if not segment.closed or self.foreign:
            return
        for entry in sorted(segment.to_reopen, key=lambda entry: entry.order):
            if entry.closed and not entry.gone:
                entry.closed = False
                segment.closed -= 1
                self.reopened += 1
                self.push(entry.name, entry)
        segment.to_reopen.clear()

    def start(self, name: str, attributes: str, *, leaf: bool = False) -> bool:
        """Opens `name` (closing what a parser would first), or only makes room for it when it
        is a `leaf` (void, or raw text); False when a parser ignores it."""
        if not self.as_written and not self.foreign:
            if name in _TABLE_PARTS and not self.open_at.get("table"):
                return False
            if name in _CLOSES_P:
                self.close_nearest(("p",), _END_SCOPE["p"])
            if name in _CLOSES:
                self.close_nearest(*_CLOSES[name])
            if name in _CLOSES_ITEM and self.item_boundary_at:
                at = self.item_boundary_at[-1]
                if self.names[at] in _CLOSES_ITEM[name]:
                    self.close(at)
            if name in _CLOSES_CURRENT and self.names and self.names[-1] in _CLOSES_CURRENT[name]:
                self.close(len(self.names) - 1)
            if name in _HEADINGS and self.names and self.names[-1] in _HEADINGS:
                self.close(len(self.names) - 1)
            if name in _RUBY_PARTS and 0 <= self.innermost(("ruby",)) >= self.innermost(_SCOPE):
                self.close_implied(_RUBY_PARTS[name])
            if name in _ENDS_ITSELF:
                self.end(name)
        if name not in _NOT_REOPENING:
            self.reopen()
        if leaf:
            return True
        entry = None
        if name in _FORMATTING:
            self.formatted += 1
            entry = _Formatting(name, (name, " ".join(attributes.split())), self.formatted)
            self.segments[-1].add(entry)
        self.push(name, entry)
        return True

    def push(self, name: str, entry: _Formatting | None) -> None:
        at = len(self.names)
        self.open_at.setdefault(name, []).append(at)
        if name in _SPECIAL:
            self.special_at.append(at)
            if name not in _NOT_ITEM_BOUNDARIES:
                self.item_boundary_at.append(at)
        self.names.append(name)
        self.entries.append(entry)
        self.foreign += name in _FOREIGN
        if name in _MARKERS:
            self.segments.append(_Segment())


def html_shape(html: str, *, limit: int = NESTING_LIMIT, as_written: bool = False) -> _Shape:
    """How many levels deep `html` nests elements, and how many formatting elements a parser
    would open again (see the module docstring), counted until either passes its limit
    (`limit` and REOPEN_LIMIT), where counting stops. Linear in the length of `html`."""
    tree = _Tree(as_written=as_written)
    deepest = 0
    position = 0
    while deepest <= limit and tree.reopened <= REOPEN_LIMIT:
        tag = _MARKUP.search(html, position)
        if tag is None or tag["unended"]:
            break
        if tag.start() > position:
            tree.reopen()  # before text
        position = tag.end()
        if tag[2] is None:
            continue  # a comment
        name = tag[2].lower()
        if name in _IGNORED:
            continue
        if tag[1]:
            tree.end(name)
            continue
        raw_text = not tree.foreign and (name == "plaintext" or name in _RAW_TEXT)
        leaf = (
            raw_text
            or name in _VOID
            or (tag[4].endswith("/") and (tree.foreign or name in _FOREIGN))
        )
        if tree.start(name, tag[3], leaf=leaf):
            deepest = max(deepest, tree.depth(1 if leaf else 0))
        if raw_text:
            end = None if name == "plaintext" else _raw_text_end(name).search(html, position)
            if end is None:
                break  # text to the end
            position = end.start()
    if position < len(html) and tree.reopened <= REOPEN_LIMIT:
        tree.reopen()  # before the text at the end
        deepest = max(deepest, tree.depth())
    return _Shape(deepest, tree.reopened)


def html_bounds_check(
    html: str,
    *,
    what: str = "The body",
    nesting_limit: int = NESTING_LIMIT,
    size_limit: int = SIZE_LIMIT,
    as_written: bool = False,
) -> None:
    """RenderFailed, in the creator's words, when `html` is too large or too deeply nested to be
    handed to a native renderer (see the module docstring)."""
    if len(html) > size_limit:
        raise RenderFailed(
            f"{what} is {len(html):,} characters of HTML; at most {size_limit:,} can be sent."
        )
    shape = html_shape(html, limit=nesting_limit, as_written=as_written)
    if shape.reopened > REOPEN_LIMIT:
        raise RenderFailed(
            f"{what} leaves formatting tags such as <b>, <i> or <font> open where a browser "
            f"would open them again more than {REOPEN_LIMIT:,} times. Close each of them where "
            "it should end."
        )
    if shape.depth > nesting_limit:
        raise RenderFailed(
            f"{what} nests HTML elements more than {nesting_limit:,} levels deep; at most "
            f"{nesting_limit:,} levels can be sent. Close the tags you open (every <div> needs "
            "its </div>), or nest fewer of them."
        )
