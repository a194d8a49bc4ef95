"""What a design is and how its values are checked.

Every value of a design reaches the email's <style> or an attribute, so each is checked when
a Design is made, whatever made it (a built-in, a creator's settings, a row read back): colours
as #rrggbb, fonts from FONTS, numbers within bounds, URLs http(s) only. The layout can then write
them as they are.

A custom template (`custom_html`) is the creator's HTML around `{{ message_content }}`;
`custom_html_problem` says why one cannot be used (see broadcasts.rendering.html for how it
is sanitised and laid out).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

# What the creator may choose, and the stack each stands for (fonts every mail client has).
FONTS = {
    "system": (
        "System (as the reader's device)",
        '-apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif',
    ),
    "helvetica": ("Helvetica / Arial", "Helvetica, Arial, sans-serif"),
    "verdana": ("Verdana", "Verdana, Geneva, sans-serif"),
    "trebuchet": ("Trebuchet MS", '"Trebuchet MS", Tahoma, sans-serif'),
    "georgia": ("Georgia", 'Georgia, "Times New Roman", Times, serif'),
    "times": ("Times New Roman", '"Times New Roman", Times, serif'),
    "courier": ("Courier New", '"Courier New", Courier, monospace'),
}
HEADERS = {"none": "No header", "text": "Text", "image": "Image"}
FOOTER_PLACEMENTS = {"below": "Below the content", "inside": "Inside the content"}
ALIGNMENTS = {"center": "Centred", "left": "Left"}
WIDTHS = (480, 800)
FONT_SIZES = (14, 20)
HEADER_TEXT_LENGTH = 100
ALT_LENGTH = 150
URL_LENGTH = 500
# A custom template: its own size and nesting, within what the layout may add (bounds.py).
CUSTOM_HTML_SIZE = 40_000
CUSTOM_HTML_NESTING = 30
# Brackets nested in its CSS: a CSS parser recurses into each.
CSS_NESTING = 8

_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_URL = URLValidator(schemes=["http", "https"])
# The Liquid a custom template may hold, each at most once except where said.
CUSTOM_VARIABLES = (
    "message_content",
    "unsubscribe_url",
    "web_view_url",
    "account.name",
    "account.postal_address",
)
_LIQUID_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_VARIABLE = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Design:
    """The layout around an email's content. ValueError when a value is not one a layout can
    take (see `design_settings_check` for the creator's words)."""

    background_color: str = "#f4f4f5"
    content_color: str = "#ffffff"
    text_color: str = "#1f2328"
    link_color: str = "#2563eb"
    muted_color: str = "#666666"
    font: str = "system"
    font_size: int = 16
    content_width: int = 600
    # The content on a card (padding, rounded corners) over the background; else text-like.
    card: bool = True
    header: str = "none"
    # Empty: the account's name.
    header_text: str = ""
    header_image_url: str = ""
    header_image_alt: str = ""
    header_color: str = "#ffffff"
    header_text_color: str = "#1f2328"
    footer_placement: str = "below"
    footer_align: str = "center"
    web_view_link: bool = True
    # A creator's own HTML around {{ message_content }}: the settings above then go unused.
    custom_html: str = ""

    def __post_init__(self) -> None:
        errors = _problems(asdict(self))
        if errors:
            raise ValueError("; ".join(f"{name}: {message}" for name, message in errors.items()))

    @property
    def font_stack(self) -> str:
        return FONTS[self.font][1]

    @property
    def color_scheme(self) -> str:
        """The scheme the design is drawn in, for the color-scheme meta: a dark content
        background is a dark design, which mail clients then leave as it is."""
        return "dark" if _luminance(self.content_color) < 0.4 else "light"

    @property
    def inner_width(self) -> int:
        """The width of what stands inside the content's padding (an image's width attribute)."""
        return self.content_width - (64 if self.card else 32)


SETTINGS = tuple(field.name for field in fields(Design) if field.name != "custom_html")
COLOUR_FIELDS = tuple(name for name in SETTINGS if name.endswith("_color"))


def _luminance(colour: str) -> float:
    red, green, blue = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def _problems(values: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in COLOUR_FIELDS:
        if not (isinstance(values.get(name), str) and _COLOUR.fullmatch(values[name])):
            errors[name] = "Use a colour such as #1f2328 (# and six hexadecimal digits)."
    choices = {
        "font": FONTS,
        "header": HEADERS,
        "footer_placement": FOOTER_PLACEMENTS,
        "footer_align": ALIGNMENTS,
    }
    for name, allowed in choices.items():
        if values.get(name) not in allowed:
            errors[name] = f"Choose one of: {', '.join(allowed)}."
    for name, (low, high) in (("font_size", FONT_SIZES), ("content_width", WIDTHS)):
        value = values.get(name)
        if type(value) is not int or not low <= value <= high:
            errors[name] = f"Use a whole number from {low} to {high}."
    for name in ("card", "web_view_link"):
        if type(values.get(name)) is not bool:
            errors[name] = "Use true or false."
    for name, limit in (("header_text", HEADER_TEXT_LENGTH), ("header_image_alt", ALT_LENGTH)):
        value = values.get(name)
        if not isinstance(value, str) or len(value) > limit or "\n" in value or "\r" in value:
            errors[name] = f"Use one line of at most {limit} characters."
        elif "{" in value:
            errors[name] = "Curly braces cannot be used here."
    url = values.get("header_image_url")
    if not isinstance(url, str) or len(url) > URL_LENGTH:
        errors["header_image_url"] = f"Use an http(s) address of at most {URL_LENGTH} characters."
    elif url:
        try:
            _URL(url)
        except ValidationError:
            errors["header_image_url"] = "Use a full http:// or https:// address of an image."
        if "{" in url:
            errors["header_image_url"] = "Curly braces cannot be used here."
    if values.get("header") == "image" and not url and "header_image_url" not in errors:
        errors["header_image_url"] = "Give the address of the header image."
    custom = values.get("custom_html", "")
    if not isinstance(custom, str):
        errors["custom_html"] = "Use HTML."
    elif custom:
        problem = custom_html_problem(custom)
        if problem:
            errors["custom_html"] = problem
    return errors


def design_settings_check(settings: dict, *, base: Design | None = None) -> dict:
    """The design settings in `settings` (others ignored) over those of `base` (Classic's
    defaults), checked: ValidationError, field by field in the creator's words, when one is
    not a value a layout can take."""
    values = {name: getattr(base or Design(), name) for name in SETTINGS}
    values.update({name: settings[name] for name in SETTINGS if name in settings})
    for name in COLOUR_FIELDS:
        if isinstance(values[name], str):
            values[name] = values[name].strip().lower()
    errors = _problems({**values, "custom_html": ""})
    if errors:
        raise ValidationError({name: ValidationError(message) for name, message in errors.items()})
    return values


def custom_html_problem(html: str) -> str | None:
    """Why `html` cannot be a custom template, in the creator's words; None when it can."""
    from broadcasts.rendering.bounds import RenderFailed, html_bounds_check

    if len(html) > CUSTOM_HTML_SIZE:
        return (
            f"The template is {len(html):,} characters; at most {CUSTOM_HTML_SIZE:,} can be used."
        )
    content = 0
    for markup in _LIQUID_MARKUP.findall(html):
        variable = _VARIABLE.fullmatch(markup)
        if variable is None or variable[1] not in CUSTOM_VARIABLES:
            return (
                f"{markup[:60]} cannot be used in a template: only "
                + ", ".join(f"{{{{ {name} }}}}" for name in CUSTOM_VARIABLES)
                + "."
            )
        content += variable[1] == "message_content"
    if content != 1:
        return (
            "The template must contain {{ message_content }} exactly once, where the email's "
            f"content goes (it has it {content} times)."
        )
    for css in _STYLE_BLOCK.findall(html):
        if _bracket_depth(css) > CSS_NESTING:
            return f"The template's CSS nests brackets more than {CSS_NESTING} deep."
    try:
        html_bounds_check(
            html,
            what="The template",
            nesting_limit=CUSTOM_HTML_NESTING,
            size_limit=CUSTOM_HTML_SIZE,
        )
    except RenderFailed as failed:
        return str(failed)
    return None


def custom_html_parts(html: str) -> tuple[str, str]:
    """A custom template as its HTML without <style> blocks, and the CSS they held."""
    css = "\n".join(_STYLE_BLOCK.findall(html))
    return _STYLE_BLOCK.sub("", html), css


def _bracket_depth(css: str) -> int:
    depth = deepest = 0
    for character in css:
        if character in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "})]":
            depth = max(0, depth - 1)
    return deepest


def uses_variable(html: str, name: str) -> bool:
    return any(match[1] == name for match in _VARIABLE.finditer(html))


def template_design(template) -> Design:
    """The Design of an EmailTemplate row; ValueError when what it holds is not valid (a row
    changed behind the forms' back)."""
    if template.mode == template.Mode.HTML:
        return Design(custom_html=template.html)
    if not isinstance(template.settings, dict):
        raise ValueError("The settings are not a mapping.")
    try:
        return Design(**design_settings_check(template.settings))
    except ValidationError as invalid:
        raise ValueError(str(invalid)) from None


def design_for(*, account, key: str) -> Design:
    """The design `key` names for `account`: a built-in, or one of the account's own templates
    (never another account's); Classic when it names none, or holds what a layout cannot take."""
    from content.email_templates.builtins import BUILTINS, CLASSIC
    from content.models import EmailTemplate

    if key in BUILTINS:
        return BUILTINS[key].design
    if not key.isdigit():
        return CLASSIC
    template = EmailTemplate.objects.filter(account_id=account.pk, pk=int(key)).first()
    if template is None:
        return CLASSIC
    try:
        return template_design(template)
    except ValueError:
        return CLASSIC


def design_choices(*, account) -> list[tuple[str, str]]:
    """(key, name) of every design the account may choose: the built-ins, then its own."""
    from content.email_templates.builtins import BUILTINS
    from content.models import EmailTemplate

    own = EmailTemplate.objects.filter(account_id=account.pk).order_by("name", "id")
    return [
        *((key, builtin.name) for key, builtin in BUILTINS.items()),
        *((template.key, template.name) for template in own.only("id", "name")),
    ]
