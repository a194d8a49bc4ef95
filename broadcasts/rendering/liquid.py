"""Liquid for broadcasts: the environments, their resource limits, and what a template may use.

Every template is rendered with strict undefined variables and strict filters, and with limits
that stop a hostile or careless template quickly instead of stalling a worker:

- loops: at most LOOP_LIMIT iterations per loop (nested loops multiply), and LOOP_LIMIT in all
  the loops of one render together (a thousand loops one after the other count as one);
- a range such as (1..100000000) cannot be handed whole to a filter (join, sort, reverse would
  build it element by element);
- output: OUTPUT_LIMIT bytes per part; assigned and captured values: NAMESPACE_LIMIT bytes;
- nesting: BLOCK_NESTING_LIMIT blocks, CONTEXT_DEPTH_LIMIT render contexts;
- size: at most MARKUP_LIMIT tags and outputs per part, so the work per recipient stays small.

`include` and `render` are removed (there are no partials), and so is the `safe` filter, which
would let a subscriber's data into the HTML unescaped.
"""

from __future__ import annotations

import functools
from difflib import get_close_matches
from typing import NamedTuple

from liquid import Environment, Mode, StrictUndefined
from liquid.context import RenderContext
from liquid.exceptions import FilterError, LiquidError, LoopIterationLimitError
from liquid.template import BoundTemplate

LOOP_LIMIT = 10_000
OUTPUT_LIMIT = 512 * 1024
NAMESPACE_LIMIT = 256 * 1024
BLOCK_NESTING_LIMIT = 20
CONTEXT_DEPTH_LIMIT = 10
MARKUP_LIMIT = 2_000

# What a template may name beyond custom fields.
SUBSCRIBER_KEYS = ("first_name", "email")
ACCOUNT_KEYS = ("name",)
GLOBALS = ("subscriber", "unsubscribe_url", "account")


class TemplateProblem(NamedTuple):
    part: str  # "subject" | "preview_text" | "body"
    line: int | None
    message: str


class _BudgetedContext(RenderContext):
    """Counts the iterations of every loop of a render, not only of the loops nested together."""

    __slots__ = ("iterations",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.iterations = 0

    def raise_for_loop_limit(self, length: int = 1) -> None:
        super().raise_for_loop_limit(length)
        self.iterations += length
        if self.iterations > LOOP_LIMIT:
            raise LoopIterationLimitError(
                f"loop iteration limit reached ({LOOP_LIMIT:,} in all loops together)",
                token=None,
            )


class _BudgetedTemplate(BoundTemplate):
    context_class = _BudgetedContext


def _no_whole_ranges(name: str, func):
    @functools.wraps(func)
    def guarded(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            if isinstance(value, range) and len(value) > LOOP_LIMIT:
                raise FilterError(
                    f"{name}: a range of {len(value):,} items is too long (at most {LOOP_LIMIT:,})",
                    token=None,
                )
        return func(*args, **kwargs)

    return guarded


class EmailEnvironment(Environment):
    loop_iteration_limit = LOOP_LIMIT
    output_stream_limit = OUTPUT_LIMIT
    local_namespace_limit = NAMESPACE_LIMIT
    block_nesting_limit = BLOCK_NESTING_LIMIT
    context_depth_limit = CONTEXT_DEPTH_LIMIT
    template_class = _BudgetedTemplate

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        for tag in ("include", "render"):
            self.tags.pop(tag, None)
        self.filters.pop("safe", None)
        self.filters = {name: _no_whole_ranges(name, f) for name, f in self.filters.items()}


# Subject, preview text and the text part; the HTML part escapes every value it outputs.
TEXT = EmailEnvironment(undefined=StrictUndefined)
HTML = EmailEnvironment(undefined=StrictUndefined, autoescape=True)
# The editor's preview of a template that has problems: shows what it can, never raises.
LAX_TEXT = EmailEnvironment(tolerance=Mode.LAX)
LAX_HTML = EmailEnvironment(tolerance=Mode.LAX, autoescape=True)


def error_line(error: LiquidError) -> int | None:
    context = error.context()
    return context[0] if context else None


def error_message(error: LiquidError) -> str:
    return str(error.message).strip()


def _unknown_variable(segments: list, custom_keys: set[str]) -> str | None:
    """Why the variable `segments` names nothing a broadcast provides, or None if it does."""
    root = segments[0]
    path = segments[1:]
    if root == "unsubscribe_url":
        return None
    if root == "account":
        if not path or path[0] in ACCOUNT_KEYS:
            return None
        return f"the account has only {', '.join(ACCOUNT_KEYS)}"
    if root == "subscriber":
        if not path or path[0] in SUBSCRIBER_KEYS or path[0] in custom_keys:
            return None
        if path[0] == "fields":
            if len(path) == 1 or not isinstance(path[1], str) or path[1] in custom_keys:
                return None
            wrong = path[1]
        elif isinstance(path[0], str):
            wrong = path[0]
        else:
            return "use subscriber.first_name, subscriber.email or a custom field"
        close = get_close_matches(wrong, [*SUBSCRIBER_KEYS, *sorted(custom_keys)], n=1)
        hint = f"did you mean “{close[0]}”? " if close else ""
        known = ", ".join(sorted(custom_keys)) or "none yet"
        return f"{hint}Subscribers have first_name, email and the custom fields ({known})"
    close = get_close_matches(str(root), GLOBALS, n=1)
    hint = f"did you mean “{close[0]}”? " if close else ""
    return f"{hint}Use subscriber, unsubscribe_url or account"


def template_problems(
    *, part: str, source: str, environment: Environment, custom_keys: set[str], sample: dict
) -> list[TemplateProblem]:
    """Syntax errors, unknown tags, filters and variables (with their lines), then whatever a
    render with sample data runs into (a limit, a filter given the wrong argument)."""
    try:
        template = environment.from_string(source)
    except LiquidError as error:
        return [TemplateProblem(part, error_line(error), error_message(error))]
    analysis = template.analyze(include_partials=False)
    problems = []
    for variables in analysis.globals.values():
        for variable in variables:
            why = _unknown_variable(variable.segments, custom_keys)
            if why:
                problems.append(
                    TemplateProblem(
                        part,
                        variable.span.line_col(source)[0],
                        f"Unknown variable “{variable}”: {why}.",
                    )
                )
    for name, spans in analysis.filters.items():
        if name not in environment.filters:
            for span in spans:
                problems.append(
                    TemplateProblem(part, span.line_col(source)[0], f"Unknown filter “{name}”.")
                )
    markup_count = sum(len(spans) for spans in analysis.tags.values()) + sum(
        len(variables) for variables in analysis.variables.values()
    )
    if markup_count > MARKUP_LIMIT:
        problems.append(
            TemplateProblem(
                part,
                None,
                f"Too much Liquid: {markup_count:,} tags and variables (at most {MARKUP_LIMIT:,}).",
            )
        )
    if problems:
        return sorted(problems, key=lambda problem: problem.line or 0)
    try:
        template.render(**sample)
    except LiquidError as error:
        return [TemplateProblem(part, error_line(error), error_message(error))]
    except Exception as error:
        return [TemplateProblem(part, None, f"This template cannot be rendered: {error}")]
    return []
