"""docs/ stays true: every variable the settings read is in the operations guide's table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_environment_variable_the_settings_read_is_documented():
    settings_source = (ROOT / "convertkit" / "settings.py").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    read = set(re.findall(r'env_(?!prefixed)[a-z]+\(\s*"([A-Z][A-Z0-9_]*)"', settings_source))
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", operations, flags=re.MULTILINE))

    assert len(read) > 30, "the settings reader changed shape: update this test"
    assert read - documented == set()


def test_the_readme_links_to_the_docs_that_exist():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs|bench)/[^)]+)\)", readme):
        assert (ROOT / target).is_file(), target
