"""Fixtures of the automation tests: those of the apps whose changes they follow."""

from __future__ import annotations

from tests.sequences.conftest import make_sequence  # noqa: F401 - the same fixture
from tests.tracking.conftest import sent_broadcast  # noqa: F401 - the same fixture
