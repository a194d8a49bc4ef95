"""bench/bulk_part.py at a tiny size, so the benchmark cannot rot (never timed here)."""

from __future__ import annotations

import pytest

from bench.bulk_part import bulk_measure
from convertkit.models import Account
from subscribers.models import Subscriber


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("existing_fraction", "created"), [(0.0, 150), (0.5, 75)])
def test_the_bulk_benchmark_creates_every_new_subscriber_and_cleans_up(existing_fraction, created):
    figures = bulk_measure(rows=150, existing_fraction=existing_fraction)

    assert figures["rows_per_s"] > 0
    assert (figures["created"], figures["failures"]) == (created, 0)
    assert not Account.objects.exists()
    assert not Subscriber.objects.exists()
