"""Typed readers for environment variables that fail loudly on a bad value.

Each reader also accepts NAME_FILE (a path whose contents are the value), so secrets can come from
Docker or Kubernetes secret files instead of the process environment.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            with open(file_path, encoding="utf-8") as secret_file:
                return secret_file.read().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"Unexpected value {name}={raw}, use True or False")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env_str(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"Unexpected value {name}={raw}, use a whole number") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"Unexpected value {name}={raw}, use at least {minimum}")
    return value


def env_fraction(name: str, default: float) -> float:
    """A share between 0 and 1 ("0.2")."""
    raw = env_str(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ImproperlyConfigured(f"Unexpected value {name}={raw}, use a number from 0 to 1")
    return value


def env_rate(name: str, default: str) -> tuple[int, int]:
    """A rate limit written COUNT/SECONDS ("30/600": 30 per 10 minutes) as (count, seconds)."""
    value = env_str(name) or default
    try:
        count, seconds = (int(part) for part in value.split("/"))
    except ValueError:
        count = seconds = 0
    if count < 1 or seconds < 1:
        raise ImproperlyConfigured(
            f"Unexpected value {name}={value!r}, use COUNT/SECONDS such as 30/600"
        )
    return count, seconds


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def anymail_setting(key: str, value: str):
    """An ANYMAIL_* value as anymail expects it: true/false as booleans, *_TIMEOUT as a number
    of seconds; everything else (tokens, keys, URLs) stays a string."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if key.endswith("TIMEOUT"):
        try:
            return float(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"Unexpected value ANYMAIL_{key}={value}, use a number of seconds"
            ) from None
    return value


def env_prefixed(prefix: str) -> dict[str, str]:
    """Every variable named PREFIX_KEY, as {KEY: value} (used to pass ANYMAIL_* through).

    PREFIX_KEY_FILE is read as the value of KEY, like every other secret.
    """
    names = {
        name.removesuffix("_FILE") if name.endswith("_FILE") else name
        for name in os.environ
        if name.startswith(prefix)
    }
    return {name[len(prefix) :]: env_str(name) or "" for name in sorted(names)}
