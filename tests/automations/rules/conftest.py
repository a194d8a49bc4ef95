"""Fixtures of the rule page tests: an account's tags, form, sequence, custom field and a sent
broadcast's links, and the editor's POST built from rows as a creator fills them in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from broadcasts.models import Broadcast
from sequences.models import Sequence
from subscribers.models import CustomField, Form, Tag
from tests.factories import CustomFieldFactory, TagFactory
from tracking.models import Link


@dataclass
class Objects:
    customer: Tag
    buyer: Tag
    newsletter: Form
    onboarding: Sequence
    city: CustomField
    sale: Broadcast
    pricing: Link


def objects_of(account, prefix: str = "") -> Objects:
    sale = Broadcast.objects.create(
        account=account,
        subject=f"{prefix}Spring sale",
        body="Hi",
        state=Broadcast.State.SENT,
    )
    Link.objects.create(account=account, broadcast=sale, url="https://ex.com/home", position=0)
    return Objects(
        customer=TagFactory(account=account, name=f"{prefix}Customer"),
        buyer=TagFactory(account=account, name=f"{prefix}Buyer"),
        newsletter=Form.objects.create(account=account, name=f"{prefix}Newsletter"),
        onboarding=Sequence.objects.create(account=account, name=f"{prefix}Onboarding"),
        city=CustomFieldFactory(
            account=account, key=f"{prefix.lower()}city", label=f"{prefix}City"
        ),
        sale=sale,
        pricing=Link.objects.create(
            account=account,
            broadcast=sale,
            url=f"https://ex.com/{prefix.lower()}pricing",
            position=1,
        ),
    )


@pytest.fixture
def ours(account_a) -> Objects:
    return objects_of(account_a)


@pytest.fixture
def theirs(account_b) -> Objects:
    """Charlie's, named apart from A's."""
    return objects_of(account_b, prefix="Other")


def rows_post(prefix: str, rows: list[dict]) -> dict:
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(len(rows)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "10",
    }
    for index, row in enumerate(rows):
        data.update({f"{prefix}-{index}-{name}": value for name, value in row.items()})
    return data


def editor_post(*, name: str, triggers: list[dict], actions: list[dict], enabled=True, **extra):
    """What the editor posts: `triggers` and `actions` as rows of field values."""
    data = {"name": name, **rows_post("trigger", triggers), **rows_post("action", actions)}
    if enabled:
        data["enabled"] = "on"
    return {**data, **extra}


def simple_post(objects: Objects, name: str = "Buyers") -> dict:
    """Tag Customer added → add tag Buyer."""
    return editor_post(
        name=name,
        triggers=[{"kind": "tag_added", "tag": objects.customer.id}],
        actions=[{"kind": "add_tag", "tag": objects.buyer.id}],
    )
