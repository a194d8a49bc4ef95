"""What the builder tests build on: an account's objects a step can name, automations made
through the services, and people standing at a step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from automations.models import Automation, Journey, Node
from automations.services import TriggerSpec, automation_create, entry_add, node_add
from broadcasts.models import Broadcast
from sequences.models import Sequence
from subscribers.models import Form
from tests.factories import CustomFieldFactory, SegmentFactory, SubscriberFactory, TagFactory
from tracking.models import Link
from webhooks.models import WebhookEndpoint

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@dataclass
class Objects:
    tag: object
    sequence: Sequence
    segment: object
    field: object
    date_field: object
    form: Form
    other: Automation
    email: Broadcast
    link: Link
    webhook: WebhookEndpoint


def objects_of(account, prefix: str = "") -> Objects:
    """One of each thing a step or an entry point can name, in `account`."""
    email = Broadcast.objects.create(
        account=account,
        subject=f"{prefix}Big news",
        body="Hi",
        state=Broadcast.State.SENT,
        frozen_subject=f"{prefix}Big news",
        frozen_html="<p>Hi</p>",
    )
    return Objects(
        tag=TagFactory(account=account, name=f"{prefix}Customer"),
        sequence=Sequence.objects.create(account=account, name=f"{prefix}Onboarding"),
        segment=SegmentFactory(account=account, name=f"{prefix}Fans"),
        field=CustomFieldFactory(account=account, key=f"{prefix.lower()}city", label="City"),
        date_field=CustomFieldFactory(
            account=account, key=f"{prefix.lower()}birthday", label="Birthday"
        ),
        form=Form.objects.create(account=account, name=f"{prefix}Newsletter"),
        other=automation_create(account=account, name=f"{prefix}Upsell"),
        email=email,
        link=Link.objects.create(
            account=account, broadcast=email, url="https://example.com/pricing", position=1
        ),
        webhook=WebhookEndpoint.objects.create(
            account=account, url="https://shop.example/hook", name=f"{prefix}Shop", secret="s"
        ),
    )


def steps_add(automation: Automation, *steps, parent: Node | None = None) -> list[Node]:
    """`steps` [(kind, config), ...] one under the other, from `parent` down."""
    nodes = []
    for kind, config in steps:
        parent = node_add(automation=automation, parent=parent, branch="", kind=kind, config=config)
        nodes.append(parent)
    return nodes


def tagged_flow(account, objects: Objects, name: str = "Welcome") -> Automation:
    automation = automation_create(account=account, name=name)
    entry_add(automation=automation, spec=TriggerSpec(kind="tag_added", object_id=objects.tag.pk))
    return automation


def people_at(node: Node, count: int, *, state=Journey.State.ACTIVE) -> list[Journey]:
    """`count` subscribers standing at `node`."""
    journeys = []
    for _ in range(count):
        subscriber = SubscriberFactory(account_id=node.account_id)
        journeys.append(
            Journey.objects.create(
                account_id=node.account_id,
                automation_id=node.automation_id,
                subscriber=subscriber,
                state=state,
                node=node if state == Journey.State.ACTIVE else None,
                due_at=None,
                arrived_at=NOW,
                entered_at=NOW,
                day_started=NOW.date(),
            )
        )
    return journeys
