"""`manage.py check --deploy`: the deployment checks of the project's own settings."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from convertkit.checks import site_url_https_check

WARNING_ID = "convertkit.W001"


def _check_output(**options) -> str:
    """What `manage.py check` prints (the test settings have deployment errors of their own,
    such as the in-memory mail backend: reported, not raised)."""
    out, err = StringIO(), StringIO()
    call_command("check", fail_level="CRITICAL", stdout=out, stderr=err, **options)
    return out.getvalue() + err.getvalue()


def test_deploy_check_warns_when_site_url_is_not_https_outside_debug(settings):
    settings.DEBUG = False
    settings.SITE_URL = "http://mail.example.com"

    output = _check_output(deploy=True)

    assert WARNING_ID in output
    assert "SITE_URL is http://mail.example.com, not https" in output
    assert "RFC 8058" in output


@pytest.mark.parametrize(
    ("debug", "site_url"),
    [(False, "https://mail.example.com"), (True, "http://localhost:8000")],
    ids=["https", "debug"],
)
def test_deploy_check_is_quiet_for_https_or_under_debug(settings, debug, site_url):
    settings.DEBUG = debug
    settings.SITE_URL = site_url

    assert WARNING_ID not in _check_output(deploy=True)


def test_the_plain_check_leaves_the_site_url_to_the_deploy_check(settings):
    settings.DEBUG = False
    settings.SITE_URL = "http://mail.example.com"

    assert WARNING_ID not in _check_output()
    assert [warning.id for warning in site_url_https_check(None)] == [WARNING_ID]
