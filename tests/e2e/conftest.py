"""Browser tests: Debian's Chromium driven by Playwright against a live server and a real worker.

In CI (CI=true) a missing browser is a failure, not a skip: a green run must mean the creator's
main flows were really clicked through.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around it
# are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def site(live_server, celery_worker, page):
    """The live site URL with a real worker behind it (tests/conftest.py); pages time out fast
    so failures are quick."""
    page.set_default_timeout(15_000)
    return live_server.url


@pytest.fixture(autouse=True)
def _mailbox_dir(tmp_path, settings):
    """The test's own mailbox directory (never the checkout's .local/mail): where mail_sink
    writes and steps.account_mail_take looks."""
    settings.MAILBOX_DIR = tmp_path / "mail"


@pytest.fixture
def mail_sink(settings):
    """A real SMTP server (aiosmtpd) writing .eml files, and the site's mail pointed at it."""
    from convertkit.dev.devstack import free_port
    from convertkit.dev.mailsink import sink_start
    from tests.broadcasts.conftest import smtp_settings

    port = free_port()
    controller = sink_start(port=port, mailbox_dir=settings.MAILBOX_DIR)
    smtp_settings(settings, port)
    yield settings.MAILBOX_DIR
    controller.stop()
