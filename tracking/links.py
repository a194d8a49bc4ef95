"""Tracked links: which links of a broadcast go through the click tracker, their Link rows, and
each recipient's tracked URLs.

1. Freezing (broadcasts.rendering.frozen_parts) stays free of side effects: every <a href> of the
   creator's sanitised body whose URL `url_trackable` accepts becomes the marker of the link's
   position (1 for the first distinct URL, 2 for the next, in order of first appearance), in the
   HTML part and in the text part alike; the end of the HTML gets the open pixel, its src the
   open marker. The URLs come back with the frozen parts.
2. broadcast_send stores one Link per distinct URL (`links_create`) in the transaction that
   freezes the broadcast, so a broadcast that is sending always has its links.
3. Per send batch the renderer builds one `BroadcastTracking` (one query for the Link ids). Per
   message, once Liquid has rendered it, `BroadcastTracking.tracked` replaces each marker left in
   the output by {TRACKING_URL}/t/c/<click token> (or /t/o/<open token>), signing each link once:
   a link in a branch this recipient does not get costs nothing.

A marker is U+FDD0, the position (or "o"), U+FDD1: Unicode noncharacters, reserved for a
program's internal use, which text does not use and Liquid leaves alone. Replacing them after
rendering costs a fraction of what a Liquid output per link costs (a lookup of a variable, its
escaping and writing, for every link). Someone
who types the markers (in their name, say) gets a tracked URL of this broadcast for their own
delivery, nothing else: harmless.

Not tracked, left exactly as the creator wrote them:
- anything but an absolute http(s) URL: mailto:, tel:, #anchors, relative and //host URLs (the
  sanitiser has already dropped javascript:, data: and every other scheme);
- a URL holding Liquid (`https://example.com/?who={{ subscriber.email }}`): it is a different URL
  for every recipient, so it cannot be one stored Link and one redirect target;
- a URL longer than Link.url holds, or with spaces, control characters or backslashes (a
  browser repairs those, reading a backslash as a slash; a redirect must not, and urlsplit
  would find another host in https://example.com\\@evil.example), and any distinct URL past
  the first MAX_LINKS;
- the links the email adds itself (the footer's unsubscribe link, a web-view link): they are not
  part of the body, and an unsubscribe link must work whatever happens to the tracker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from django.conf import settings

from tracking.models import Link
from tracking.tokens import click_signer, open_token

MAX_URL_LENGTH = Link._meta.get_field("url").max_length
# Far beyond any real email, and well within Link.position's smallint.
MAX_LINKS = 1_000
_NOT_IN_A_URL = re.compile(r"[\x00-\x20\x7f\\]")
_MARKER = re.compile("\ufdd0(o|[1-9][0-9]{0,4})\ufdd1")
OPEN_MARKER = "\ufdd0o\ufdd1"


def link_marker(position: int) -> str:
    return f"\ufdd0{position}\ufdd1"


def url_trackable(url: str) -> bool:
    """Whether a link to `url` (as a browser reads the href: unescaped, trimmed) is tracked."""
    if len(url) > MAX_URL_LENGTH or _NOT_IN_A_URL.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def links_create(*, broadcast, urls: Sequence[str]) -> None:
    """The broadcast's Link rows, `urls` in order of first appearance (position 1 first). Run
    again (a retry), it creates none twice: (broadcast, url) is unique."""
    Link.objects.bulk_create(
        [
            Link(account_id=broadcast.account_id, broadcast=broadcast, url=url, position=position)
            for position, url in enumerate(urls, start=1)
        ],
        ignore_conflicts=True,
    )


def links_store(*, broadcast, frozen):
    """Stores the Link rows of a message frozen again after an edit (a sequence email), and
    returns `frozen` with each link marker naming its stored position: a URL the message
    already has keeps its position, a new one takes the next free one. Positions are never
    given to another URL, so a send task still rendering the previous version tracks each of
    its links to the right URL. Call it in the transaction that saves the frozen parts."""
    existing = dict(Link.objects.filter(broadcast=broadcast).values_list("url", "position"))
    free = max(existing.values(), default=0) + 1
    positions: dict[str, int] = {}
    added = []
    for order, url in enumerate(frozen.links, start=1):
        if url in existing:
            positions[str(order)] = existing[url]
            continue
        positions[str(order)] = free
        added.append(
            Link(account_id=broadcast.account_id, broadcast=broadcast, url=url, position=free)
        )
        free += 1
    Link.objects.bulk_create(added, ignore_conflicts=True)

    def stored(marker: re.Match) -> str:
        position = positions.get(marker[1])
        return marker[0] if position is None else link_marker(position)

    return frozen._replace(
        html=_MARKER.sub(stored, frozen.html), text=_MARKER.sub(stored, frozen.text)
    )


class BroadcastTracking:
    """The open and click URLs of one frozen broadcast's messages; reads its Link ids once."""

    def __init__(self, *, broadcast_id: int) -> None:
        self._broadcast_id = broadcast_id
        self._link_ids = dict(
            Link.objects.filter(broadcast_id=broadcast_id).values_list("position", "id")
        )
        # An origin: nothing in it needs escaping in HTML.
        self._click_prefix = f"{settings.TRACKING_URL}/t/c/"
        self._open_prefix = f"{settings.TRACKING_URL}/t/o/"

    def tracked(self, *, delivery_id: int, html: str, text: str) -> tuple[str, str]:
        """`html` and `text` with each marker replaced by its URL for this delivery; a marker
        with no Link (typed by someone) is left as it is."""
        urls: dict[str, str] = {}
        click_token = click_signer(broadcast_id=self._broadcast_id, delivery_id=delivery_id)

        def url(marker: re.Match) -> str:
            key = marker[1]
            found = urls.get(key)
            if found is None:
                if key == "o":
                    token = open_token(broadcast_id=self._broadcast_id, delivery_id=delivery_id)
                    found = self._open_prefix + token
                else:
                    link_id = self._link_ids.get(int(key))
                    if link_id is None:
                        return marker[0]
                    found = self._click_prefix + click_token(link_id)
                urls[key] = found
            return found

        return _MARKER.sub(url, html), _MARKER.sub(url, text)
