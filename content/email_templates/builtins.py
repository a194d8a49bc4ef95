"""The designs every account has, defined here: Classic (the card the product always sent),
Modern (a header band and bolder type) and Plain (text-like: no card, no colours)."""

from __future__ import annotations

from typing import NamedTuple

from content.email_templates.designs import Design


class Builtin(NamedTuple):
    name: str
    description: str
    design: Design


CLASSIC = Design()
MODERN = Design(
    background_color="#eef2f7",
    content_color="#ffffff",
    text_color="#111827",
    link_color="#4f46e5",
    muted_color="#6b7280",
    font="helvetica",
    font_size=17,
    content_width=640,
    header="text",
    header_color="#4f46e5",
    header_text_color="#ffffff",
    footer_placement="below",
    footer_align="center",
)
PLAIN = Design(
    background_color="#ffffff",
    content_color="#ffffff",
    text_color="#222222",
    link_color="#1a0dab",
    muted_color="#777777",
    card=False,
    footer_placement="inside",
    footer_align="left",
    web_view_link=False,
)

# By key: what Broadcast.email_template and Account.default_email_template hold for them.
BUILTINS = {
    "classic": Builtin("Classic", "A white card on a light grey background.", CLASSIC),
    "modern": Builtin("Modern", "A coloured header band with your name, and bolder type.", MODERN),
    "plain": Builtin("Plain", "Like a personal email: no card, no colours.", PLAIN),
}
DEFAULT_KEY = "classic"
