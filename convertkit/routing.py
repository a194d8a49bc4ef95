"""URL patterns that mail clients and ESPs reach with or without the trailing slash."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path
from django.urls.resolvers import RegexPattern, RoutePattern


def slash_optional(patterns: list[URLPattern]) -> list[URLPattern]:
    """The patterns, each one ending in a slash followed by a twin without it.

    Mail clients, link rewriters and ESPs' webhook settings drop a trailing slash, and Django's
    APPEND_SLASH answers the slashless URL with a redirect (or a 500 for a POST under DEBUG)
    that an RFC 8058 one-click POST or an ESP does not follow. The twin has no name, so
    reverse() keeps giving the canonical URL with its slash.
    """
    result = []
    for pattern in patterns:
        result.append(pattern)
        route = str(pattern.pattern)
        if isinstance(pattern.pattern, RoutePattern) and len(route) > 1 and route.endswith("/"):
            result.append(path(route[:-1], pattern.callback, pattern.default_args))
        elif isinstance(pattern.pattern, RegexPattern) and route.endswith(("/$", "/\\Z")):
            end = route.rindex("/")
            result.append(
                re_path(route[:end] + route[end + 1 :], pattern.callback, pattern.default_args)
            )
    return result
