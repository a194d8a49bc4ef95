from __future__ import annotations

from tests.sequences.conftest import make_sequence  # noqa: F401 - the sequences' fixture
