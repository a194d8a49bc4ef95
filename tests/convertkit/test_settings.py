"""Settings come from the environment and fail loudly, naming the variable, on a bad value.

Each case starts a fresh interpreter with a crafted environment, as a deployment would.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
SETUP = "import django; django.setup()"
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "SITE_URL": "https://mail.example.com",
    "ALLOWED_HOSTS": "mail.example.com",
}


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "convertkit.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _fails_with(message: str, **env: str) -> None:
    result = _python(SETUP, **env)
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("value", ["yes-ish", "2", "enabled"])
def test_debug_that_is_not_a_boolean_is_refused(value):
    _fails_with(f"Unexpected value DEBUG={value}, use True or False", DEBUG=value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1/convertkit", "DATABASE_URL must be a postgres:// URL"),
        ("sqlite:///db.sqlite3", "DATABASE_URL must be a postgres:// URL"),
        ("nonsense://x", "Unexpected value DATABASE_URL"),
    ],
)
def test_database_url_that_is_not_postgresql_is_refused(url, message):
    _fails_with(message, DEBUG="true", DATABASE_URL=url)


def test_redis_url_with_another_scheme_is_refused():
    _fails_with(
        "Unexpected value REDIS_URL=http://127.0.0.1:6379",
        DEBUG="true",
        REDIS_URL="http://127.0.0.1:6379",
    )


def test_missing_secret_key_is_refused_when_debug_is_off():
    env = {**PRODUCTION}
    del env["SECRET_KEY"]
    _fails_with("SECRET_KEY is required when DEBUG is False", **env)


def test_missing_site_url_is_refused_when_debug_is_off():
    env = {**PRODUCTION}
    del env["SITE_URL"]
    _fails_with("SITE_URL is required when DEBUG is False", **env)


def test_site_url_without_a_scheme_is_refused():
    _fails_with(
        "Unexpected value SITE_URL=mail.example.com", DEBUG="true", SITE_URL="mail.example.com"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CELERY_VISIBILITY_TIMEOUT", "six hours", "use a whole number"),
        ("CELERY_VISIBILITY_TIMEOUT", "10", "use at least 60"),
        ("DATABASE_CONN_MAX_AGE", "-1", "use at least 0"),
        ("EMAIL_PORT", "smtp", "use a whole number"),
        ("IMPORT_MAX_BYTES", "1GB", "use a whole number"),
        ("BROADCAST_PAUSE_FAILURE_RATE", "20%", "use a number from 0 to 1"),
        ("BROADCAST_PAUSE_FAILURE_RATE", "1.5", "use a number from 0 to 1"),
    ],
)
def test_numbers_that_are_not_numbers_or_too_small_are_refused(name, value, message):
    _fails_with(f"Unexpected value {name}={value}, {message}", DEBUG="true", **{name: value})


def test_tls_and_ssl_together_are_refused():
    _fails_with(
        "EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive",
        DEBUG="true",
        EMAIL_USE_TLS="true",
        EMAIL_USE_SSL="true",
    )


def test_secret_key_is_read_from_secret_key_file(tmp_path):
    key = secrets.token_urlsafe(50)
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(key + "\n")
    env = {**PRODUCTION, "SECRET_KEY_FILE": str(secret_file)}
    del env["SECRET_KEY"]

    result = _python(
        f"{SETUP}; from django.conf import settings; print(settings.SECRET_KEY)", **env
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == key


def test_unreadable_secret_file_is_refused(tmp_path):
    missing = tmp_path / "no-such-file"
    _fails_with(
        f"SECRET_KEY_FILE={missing} cannot be read", **PRODUCTION, SECRET_KEY_FILE=str(missing)
    )


def test_anymail_variables_become_the_anymail_setting():
    result = _python(
        f"{SETUP}; from django.conf import settings; print(settings.ANYMAIL)",
        DEBUG="true",
        ANYMAIL_POSTMARK_SERVER_TOKEN="token-123",
        ANYMAIL_REQUESTS_TIMEOUT="10",
        ANYMAIL_IGNORE_UNSUPPORTED_FEATURES="true",
    )

    assert result.returncode == 0, result.stderr
    assert "'POSTMARK_SERVER_TOKEN': 'token-123'" in result.stdout
    # anymail wants numbers and booleans for these, not strings.
    assert "'REQUESTS_TIMEOUT': 10.0" in result.stdout
    assert "'IGNORE_UNSUPPORTED_FEATURES': True" in result.stdout


def test_a_bad_anymail_timeout_stops_the_process_with_its_name():
    _fails_with(
        "Unexpected value ANYMAIL_REQUESTS_TIMEOUT=soon",
        DEBUG="true",
        ANYMAIL_REQUESTS_TIMEOUT="soon",
    )


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env={"PATH": os.environ["PATH"], **PRODUCTION},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_warns_when_debug_is_on():
    """The check above can fail: the same command flags a development configuration."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env={"PATH": os.environ["PATH"], **PRODUCTION, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "security.W018" in result.stdout + result.stderr


def test_anymail_settings_pass_through_and_may_come_from_files(tmp_path, monkeypatch):
    from convertkit.env import env_prefixed

    secret = tmp_path / "postmark"
    secret.write_text("server-token-from-file\n")
    monkeypatch.setenv("ANYMAIL_POSTMARK_SERVER_TOKEN_FILE", str(secret))
    monkeypatch.setenv("ANYMAIL_MAILGUN_SENDER_DOMAIN", "mg.example.com")
    assert env_prefixed("ANYMAIL_") == {
        "MAILGUN_SENDER_DOMAIN": "mg.example.com",
        "POSTMARK_SERVER_TOKEN": "server-token-from-file",
    }
