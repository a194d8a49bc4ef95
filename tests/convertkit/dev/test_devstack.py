"""`make run` / `make test` plumbing: which services, embedded servers, stopping everything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dj_database_url
import psycopg2
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from convertkit.dev import devstack
from convertkit.dev.devstack import (
    EMBEDDED,
    ENVIRONMENT,
    LOCALHOST,
    LOCALHOST_DATABASE_URL,
    LOCALHOST_REDIS_URL,
    Choice,
    Supervisor,
    services_choose,
)
from convertkit.models import Account, User
from subscribers.models import Form, Subscriber, Tag

BASE_DIR = Path(__file__).resolve().parents[3]


def _never_called() -> bool:
    raise AssertionError("probed a service whose choice was already made")


def test_urls_from_the_environment_win_without_probing_anything():
    plan = services_choose(
        environ={"DATABASE_URL": "postgres://db/x", "REDIS_URL": "redis://cache:6379/2"},
        try_localhost=True,
        postgres_answers=_never_called,
        redis_answers=_never_called,
    )

    assert plan.database == Choice(ENVIRONMENT, "postgres://db/x")
    assert plan.redis == Choice(ENVIRONMENT, "redis://cache:6379/2")


def test_tests_use_the_localhost_services_when_they_answer():
    plan = services_choose(
        environ={}, try_localhost=True, postgres_answers=lambda: True, redis_answers=lambda: True
    )

    assert plan.database == Choice(LOCALHOST, LOCALHOST_DATABASE_URL)
    assert plan.redis == Choice(LOCALHOST, LOCALHOST_REDIS_URL)


def test_services_that_do_not_answer_are_replaced_by_embedded_ones_each_on_its_own():
    plan = services_choose(
        environ={"DATABASE_URL": "  "},  # blank counts as unset
        try_localhost=True,
        postgres_answers=lambda: False,
        redis_answers=lambda: True,
    )

    assert plan.database == Choice(EMBEDDED, None)
    assert plan.redis == Choice(LOCALHOST, LOCALHOST_REDIS_URL)


def test_make_run_uses_embedded_services_rather_than_localhost_ones():
    plan = services_choose(
        environ={"REDIS_URL": "redis://cache:6379/0"},
        try_localhost=False,
        postgres_answers=_never_called,
        redis_answers=_never_called,
    )

    assert plan.database == Choice(EMBEDDED, None)
    assert plan.redis == Choice(ENVIRONMENT, "redis://cache:6379/0")


def _group_is_gone(pgid: int) -> bool:
    return not devstack.process_group_alive(pgid)


def test_embedded_postgresql_and_redis_start_answer_and_are_stopped(tmp_path):
    supervisor = Supervisor(env={**os.environ})
    try:
        database_url = devstack.postgres_embedded_start(
            supervisor,
            data_dir=tmp_path / "postgres",
            database="ck_embedded",
            durable=False,
            log_path=tmp_path / "postgres.log",
        )
        redis_url = devstack.redis_embedded_start(
            supervisor, data_dir=tmp_path / "redis", durable=False, log_path=tmp_path / "redis.log"
        )
        params = dj_database_url.parse(database_url)
        with (
            psycopg2.connect(
                host=params["HOST"], user=params["USER"], dbname=params["NAME"]
            ) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute("SHOW server_version")
            assert cursor.fetchone()[0].startswith("18.")
        conn.close()
        redis_port = int(redis_url.rsplit(":", 1)[1])
        assert devstack.redis_answers(port=redis_port)
        groups = [child.process.pid for child in supervisor.children]
    finally:
        supervisor.stop_all()

    assert all(_group_is_gone(pgid) for pgid in groups)
    assert not devstack.redis_answers(port=redis_port)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host=params["HOST"], user="postgres", dbname="postgres", connect_timeout=2)


def test_stopping_also_stops_what_a_child_forked(tmp_path):
    supervisor = Supervisor(env={**os.environ})
    marker = tmp_path / "grandchild.pid"
    child = supervisor.start(
        "forker", ["sh", "-c", f"sleep 300 & echo $! > {marker}; exec sleep 300"]
    )
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(marker.read_text())

    supervisor.stop_all(timeout=5)

    assert child.process.poll() is not None
    # The grandchild shares the group: the group is empty only if it is gone too.
    assert grandchild != child.process.pid
    assert _group_is_gone(child.process.pid)


def _devstack(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convertkit.dev.devstack", *args],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("selection", "exit_code"),
    [
        pytest.param(
            [
                "tests/convertkit/dev/test_devstack.py::test_tests_use_the_localhost_services_when_they_answer"
            ],
            0,
            id="passing",
        ),
        pytest.param(
            ["tests/convertkit/dev/test_devstack.py", "-k", "zz_selects_nothing"], 5, id="none-ran"
        ),
    ],
)
def test_make_test_returns_the_exit_code_of_pytest(selection, exit_code):
    """5 is pytest's "no tests ran": it must reach CI as a failure, not be swallowed."""
    result = _devstack("test", "-q", *selection)

    assert result.returncode == exit_code, result.stdout + result.stderr
    assert "PostgreSQL: environment" in result.stdout


def test_make_run_refuses_a_busy_port_with_a_clear_message():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _devstack("run", PORT=str(port))

    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is in use" in result.stdout
    assert f"make run PORT={port + 1}" in result.stdout
    assert "Traceback" not in result.stderr


def test_ensure_demo_account_creates_the_login_once(settings, capsys, db):
    settings.DEBUG = True

    call_command("ensure_demo_account", subscribers=12)
    call_command("ensure_demo_account", subscribers=12)

    user = User.objects.get(email=devstack.DEMO_EMAIL)
    assert user.check_password(devstack.DEMO_PASSWORD)
    (account,) = Account.objects.filter(memberships__user=user)
    assert account.postal_address and account.sender_email
    assert Subscriber.objects.filter(account=account).count() == 12
    assert Tag.objects.filter(account=account).count() == 3
    (form,) = Form.objects.filter(account=account)  # once, though the command ran twice
    assert form.double_opt_in and [tag.name for tag in form.tags.all()] == ["newsletter"]
    assert f"{devstack.DEMO_EMAIL} / {devstack.DEMO_PASSWORD}" in capsys.readouterr().out


def test_ensure_demo_account_refuses_to_run_without_debug(settings, db):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="only with DEBUG=true"):
        call_command("ensure_demo_account")
    assert not User.objects.filter(email=devstack.DEMO_EMAIL).exists()


def test_signals_stop_the_run_loop():
    stop = devstack.StopRequested()
    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        stop.install()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.wait(2)
        assert stop.signal_name == "SIGTERM"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_make_test_hands_the_chosen_localhost_services_to_pytest(monkeypatch, capfd):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(devstack, "localhost_postgres_answers", lambda: True)
    monkeypatch.setattr(devstack, "redis_answers", lambda **kwargs: True)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = devstack.command_foreground(
            [
                sys.executable,
                "-c",
                "import os; print('got', os.environ['DATABASE_URL'], os.environ['REDIS_URL'])",
            ],
            purpose="test",
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    assert code == 0
    assert f"got {LOCALHOST_DATABASE_URL} {LOCALHOST_REDIS_URL}" in capfd.readouterr().out
