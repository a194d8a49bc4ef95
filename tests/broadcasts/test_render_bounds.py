"""Bodies too large or too deeply nested for the native renderers (nh3, css-inline): refused
where they are saved and checked, and refused again, with no crash, before every call into native
code, whatever is stored. Markup that would kill the process runs in a subprocess, so that a
crash fails the test instead of killing pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import css_inline
import pytest
from django.urls import reverse
from django.utils import timezone

from broadcasts.models import Broadcast
from broadcasts.rendering import RenderFailed, broadcast_problems, preview
from broadcasts.rendering.bounds import (
    LAYOUT_NESTING,
    LAYOUT_SIZE,
    NESTING_LIMIT,
    REOPEN_LIMIT,
    SIZE_LIMIT,
    html_shape,
)
from broadcasts.rendering.html import Placeholders, creator_html, sanitise
from broadcasts.services import broadcasts_due_send
from convertkit.celery import app as celery_app
from tests.broadcasts.conftest import process_env
from tests.broadcasts.test_views import page_inputs
from tests.factories import AccountFactory, SubscriberFactory

ROOT = Path(__file__).resolve().parents[2]
# Past what kills css-inline on a main thread's 8 MiB stack (about 10,100 levels of <div>).
DEEP = 12_000
DEEP_BODIES = {
    "html": ("html", "<div>" * DEEP),
    "markdown with html": ("markdown", "<div>" * DEEP),
    "markdown emphasis": ("markdown", "*a " * DEEP + "x" + " a*" * DEEP),
    "liquid loop": ("html", "{% for i in (1..4000) %}<table><tr><td>{% endfor %}"),
}
REFUSAL = f"nests HTML elements more than {NESTING_LIMIT} levels deep"


def _in_subprocess(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a new Python process with Django set up on the test database."""
    return subprocess.run(
        [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
        cwd=ROOT,
        env=process_env(DJANGO_SETTINGS_MODULE="convertkit.settings"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _survived(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture
def account(db):
    return AccountFactory(name="Ann's Kitchen", postal_address="1 Main Street\nSpringfield")


# The count ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "depth"),
    [
        ("<div><div><p>text</p></div></div>", 3),
        ("<p>one<p>two<ul><li>a<li>b</ul>", 2),
        ("<table><tr><td>a<td>b<tr><td><b>c</b></table>", 4),
        ("<div><!-- <div><div><div> --></div>", 1),
        ("<div title='</div>'><div>", 2),
        ("<style><div><div></style><br><img src=x>", 1),
        ("<span><div></span><span><div></span>", 4),
        ("<p><b title=1><p><b title=2><p><b title=3><p>x", 4),
        ("<p><font face=arial>a" * 50, 5),
        ("<div <div <div", 0),
    ],
)
def test_nesting_is_counted_as_a_browser_builds_the_tree(html, depth):
    assert html_shape(html).depth == depth


@pytest.mark.parametrize(
    "html",
    [
        "".join(f"<p><b title={n}><object><div>" for n in range(25)) + "x",
        "".join(f"<li><b title={n}><object><li>" for n in range(60)) + "x",
        "".join(f"<b title={n}><object><p>" for n in range(60)) + "x",
        "<b><i><u>" * 30 + "<div>x</div></b>" * 30,
        "<table><tr><td><font><center>" * 20 + "x",
    ],
)
def test_what_css_inline_builds_from_sanitised_html_is_never_deeper_than_counted(html):
    clean = sanitise(html)
    inlined = css_inline.CSSInliner(load_remote_stylesheets=False).inline(clean)
    assert html_shape(inlined, as_written=True).depth <= html_shape(clean, as_written=True).depth


def test_the_limits_leave_css_inline_a_wide_margin_even_on_a_small_thread_stack():
    # Twice the deepest email the checks let through, inlined on a thread with a 1 MiB stack,
    # an eighth of the usual 8 MiB.
    depth = 2 * (NESTING_LIMIT + LAYOUT_NESTING)
    result = _in_subprocess(
        "import threading, css_inline\n"
        "threading.stack_size(1024 * 1024)\n"
        f"html = '<html><body>' + '<table><tbody><tr><td>' * {depth // 4} + '</body></html>'\n"
        "thread = threading.Thread(target=lambda: print(len(css_inline.inline(html))))\n"
        "thread.start()\n"
        "thread.join()\n"
    )
    assert int(_survived(result)) > 0


# Where the body is saved and checked ---------------------------------------------------------


@pytest.mark.parametrize(("body_format", "body"), list(DEEP_BODIES.values())[:3])
def test_a_deeply_nested_body_is_a_problem_naming_the_limit(account, body_format, body):
    broadcast = Broadcast.objects.create(
        account=account, subject="Soup", body=body, body_format=body_format
    )
    (problem,) = broadcast_problems(broadcast)
    assert problem.part == "body" and REFUSAL in problem.message


def test_a_body_an_ordinary_email_nests_has_no_problem(account):
    layers = "<table><tr><td>" * 12 + "<p><b>Soup</b> is back.</p>" + "</td></tr></table>" * 12
    broadcast = Broadcast.objects.create(account=account, subject="Soup", body=layers)
    assert broadcast_problems(broadcast) == []


def test_the_editor_refuses_to_save_a_deeply_nested_body(alice_client, account_a):
    broadcast = Broadcast.objects.create(account=account_a, subject="Soup", body="Hello.")
    page = reverse("broadcast_edit", args=[broadcast.id])
    data = {**page_inputs(alice_client.get(page)), "body_format": "html", "body": "<div>" * DEEP}

    response = alice_client.post(page, data)

    assert response.status_code == 400
    assert REFUSAL in response.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.body == "Hello."


def test_formatting_tags_left_open_to_be_reopened_again_and_again_are_refused(account):
    # Each </div><div>x closes the 150 <b>s and opens copies of them again: a parser would
    # build them 150 times per 12 characters.
    body = "<div>" + "".join(f"<b title={n}>" for n in range(150)) + "</div><div>x" * 200
    shape = html_shape(body)
    assert shape.depth < NESTING_LIMIT and shape.reopened > REOPEN_LIMIT
    with pytest.raises(RenderFailed, match="formatting tags"):
        creator_html(body=body, body_format="html", placeholders=Placeholders(body))


def test_markdown_that_would_write_a_huge_html_is_refused_before_it_is_written(account):
    url = "https://example.com/" + "a" * 1_000
    body = f"[a]: {url}\n\n" + "[a] " * (SIZE_LIMIT // 1_000 + 100)
    with pytest.raises(RenderFailed, match=f"at most {SIZE_LIMIT:,}"):
        creator_html(body=body, body_format="markdown", placeholders=Placeholders(body))


# Whatever is stored: no crash, in the web process or a worker ------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shape", DEEP_BODIES)
def test_the_preview_of_a_stored_deeply_nested_body_shows_the_problem_without_crashing(shape):
    body_format, body = DEEP_BODIES[shape]
    broadcast = Broadcast.objects.create(
        account=AccountFactory(), subject="Soup", body=body, body_format=body_format
    )
    output = _survived(
        _in_subprocess(
            "from broadcasts.models import Broadcast\n"
            "from broadcasts.rendering import preview\n"
            f"shown = preview(Broadcast.objects.get(pk={broadcast.pk}))\n"
            "print([problem.message for problem in shown.problems])\n"
        )
    )
    assert REFUSAL in output


@pytest.mark.django_db(transaction=True)
def test_the_editor_of_a_stored_deeply_nested_draft_opens_and_says_why(alice, account_a):
    broadcast = Broadcast.objects.create(account=account_a, subject="Soup", body="<div>" * DEEP)
    output = _survived(
        _in_subprocess(
            "from django.test import Client\n"
            "from convertkit.models import User\n"
            "client = Client()\n"
            f"client.force_login(User.objects.get(pk={alice.pk}))\n"
            f"response = client.get('{reverse('broadcast_edit', args=[broadcast.id])}')\n"
            "print(response.status_code)\n"
            "print(response.content.decode())\n"
        )
    )
    status, page = output.split("\n", 1)
    assert status == "200"
    assert REFUSAL in page


@pytest.mark.django_db(transaction=True)
def test_a_due_broadcast_that_cannot_be_rendered_goes_back_to_draft_and_the_others_start():
    account = AccountFactory()
    SubscriberFactory(account=account)
    due = timezone.now() - timedelta(minutes=1)
    deep, fine = (
        Broadcast.objects.create(
            account=account,
            subject="Soup",
            body=body,
            state=Broadcast.State.SCHEDULED,
            scheduled_at=due,
        )
        for body in ("<div>" * DEEP, "Soup is back.")
    )
    try:
        # What celery beat runs every minute; twice, as it would a minute later.
        for _ in range(2):
            _survived(
                _in_subprocess("from broadcasts.tasks import start_scheduled\nstart_scheduled()\n")
            )
    finally:
        celery_app.control.purge()  # the fan-out the started broadcast queued

    deep.refresh_from_db()
    fine.refresh_from_db()
    assert deep.state == Broadcast.State.DRAFT
    assert REFUSAL in deep.paused_reason
    assert fine.state == Broadcast.State.SENDING


def test_a_due_broadcast_whose_email_is_too_large_goes_back_to_draft_and_the_others_start(db):
    # A postal address stored by some other path than the settings form, too large for the
    # email around any body: only the email's own check, before css-inline, finds it.
    crowded = AccountFactory(postal_address="1 Main Street\n" + "x" * (SIZE_LIMIT + LAYOUT_SIZE))
    fine = AccountFactory()
    due = timezone.now() - timedelta(minutes=1)
    broadcasts = []
    for account in (crowded, fine):
        SubscriberFactory(account=account)
        broadcasts.append(
            Broadcast.objects.create(
                account=account,
                subject="Soup",
                body="Soup is back.",
                state=Broadcast.State.SCHEDULED,
                scheduled_at=due,
            )
        )

    started = broadcasts_due_send()

    too_large, sent = broadcasts
    assert started == [sent.pk]
    too_large.refresh_from_db()
    assert too_large.state == Broadcast.State.DRAFT
    assert re.search(r"The email is [\d,]+ characters of HTML", too_large.paused_reason)


def test_a_preview_whose_liquid_builds_too_deep_a_body_lists_the_problem(account):
    # Not a crash risk in this process: the count stops it before css-inline.
    broadcast = Broadcast(
        account=account,
        subject="Soup",
        body="{% for i in (1..300) %}<div>{% endfor %}",
        body_format="html",
    )
    shown = preview(broadcast)
    assert [problem.part for problem in shown.problems] == ["body"]
    assert REFUSAL in shown.problems[0].message


def test_an_unexpected_error_in_one_due_broadcast_does_not_stop_the_others(db, monkeypatch):
    from broadcasts import services

    accounts = [AccountFactory(), AccountFactory()]
    due = timezone.now() - timedelta(minutes=1)
    broadcasts = []
    for account in accounts:
        SubscriberFactory(account=account)
        broadcasts.append(
            Broadcast.objects.create(
                account=account,
                subject="Soup",
                body="Soup is back.",
                state=Broadcast.State.SCHEDULED,
                scheduled_at=due,
            )
        )
    broken, fine = broadcasts
    frozen_parts = services.frozen_parts

    def fails_for_the_first(broadcast):
        if broadcast.pk == broken.pk:
            raise RuntimeError("a bug nobody foresaw")
        return frozen_parts(broadcast)

    monkeypatch.setattr(services, "frozen_parts", fails_for_the_first)

    assert broadcasts_due_send() == [fine.pk]
    broken.refresh_from_db()
    assert broken.state == Broadcast.State.SCHEDULED
