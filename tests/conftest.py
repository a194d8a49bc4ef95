"""Shared fixtures: the alice/bob/charlie personas, logged-in clients, and real services.

alice owns account A, bob is a member of A, charlie owns account B and must see nothing of A.
"""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from convertkit.celery import app as celery_app
from convertkit.models import Membership
from tests.factories import AccountFactory, MembershipFactory, UserFactory

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Real hashing costs half a second per persona; tests need passwords to work, not to be slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _isolated_cache():
    """Each test starts with an empty Redis cache (rate limits, buffers)."""
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _tracking_events_emptied(request, django_db_blocker):
    """tracking_event is unmanaged (partitioned), so the flush after a test that commits leaves
    its rows for the next tests to find: they are truncated here."""
    yield
    marker = request.node.get_closest_marker("django_db")
    committed = (marker is not None and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if committed:
        from django.db import connection

        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE tracking_event")


@pytest.fixture
def account_a(db):
    return AccountFactory(name="Ann's Kitchen")


@pytest.fixture
def account_b(db):
    return AccountFactory(name="Charlie's Garage")


@pytest.fixture
def alice(account_a):
    user = UserFactory(email="alice@example.com")
    MembershipFactory(user=user, account=account_a, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def bob(account_a):
    user = UserFactory(email="bob@example.com")
    MembershipFactory(user=user, account=account_a, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def charlie(account_b):
    user = UserFactory(email="charlie@example.com")
    MembershipFactory(user=user, account=account_b, role=Membership.Role.OWNER)
    return user


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice):
    return _client_for(alice)


@pytest.fixture
def bob_client(bob):
    return _client_for(bob)


@pytest.fixture
def charlie_client(charlie):
    return _client_for(charlie)


@pytest.fixture
def eager_celery():
    """Tasks run in the caller as they are queued (with django_capture_on_commit_callbacks
    (execute=True) for those queued on commit): for tests of what a task does, not of queuing."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def celery_worker_start(transactional_db):
    """Starts a real Celery worker (in this process, consuming every queue from real Redis) when
    the test says so: `with celery_worker_start(): ...`, e.g. once its tasks are queued."""

    def start(*, pool: str = "threads", concurrency: int = 1):
        return start_worker(
            celery_app,
            pool=pool,
            concurrency=concurrency,
            queues=list(settings.CELERY_QUEUE_NAMES),
            perform_ping_check=False,
            shutdown_timeout=30,
        )

    return start


@pytest.fixture
def celery_worker(celery_worker_start):
    """A real Celery worker running for the whole test."""
    with celery_worker_start(concurrency=2) as worker:
        yield worker
