"""Realistic demo data, generated inside PostgreSQL (bench/pages.py times it at millions of rows).

Rows are produced by `INSERT ... SELECT ... FROM generate_series` rather than sent from Python
through COPY: generating the random values in SQL is far cheaper than building rows in Python,
and the rest of the cost (the indexes, the foreign-key checks at commit) is the same either way.
Each batch is one statement, so the statement-level counter triggers (migration 0002) see every
row and SubscriberCount and Tag.subscriber_count stay exact.

Every address is under a reserved domain (RFC 2606 / RFC 6761), so a demo broadcast can never
reach a real person, and carries the subscriber's id (`ana.garcia+123456@gmail.example`), which
keeps it unique in the account however many times the seed runs.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, connections, transaction
from django.utils import timezone

from convertkit.models import Account, User
from convertkit.services import account_create
from subscribers.models import CustomField, Subscriber, Tag
from subscribers.services import tag_get_or_create

DEMO_ACCOUNT_NAME = "Demo newsletter"
DEMO_OWNER_EMAIL = "demo@example.com"
DEFAULT_BATCH_SIZE = 100_000
HISTORY = timedelta(days=730)

# Word lists stay compact strings (SIM905): one name a line would be three hundred lines.
FIRST_NAMES = (  # noqa: SIM905
    "Ada Adam Aisha Alex Alice Amelia Ana Andrea Anna Arjun Ava Ben Bruno Camila Carla Carlos "
    "Charlotte Chen Chloe Daniel David Diego Elena Eli Elif Emily Emma Ethan Eva Fatima Felix "
    "Finn Gabriel Grace Hana Hannah Harper Hugo Ibrahim Isabella Ivan Jack Jacob James Javier "
    "Jin Joao Jonas Jose Julia Kai Karim Kate Laura Leo Liam Lina Lucas Lucia Luis Maya Mateo "
    "Maria Mark Marta Mia Michael Mohamed Nadia Noah Nora Olivia Omar Oscar Paula Pedro Priya "
    "Rafael Rosa Ryan Sara Sofia Sophie Tariq Theo Tom Valentina Victor Wei Yara Yusuf Zoe"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Adams Ahmed Ali Alvarez Anderson Bauer Bianchi Brown Campbell Chen Clark Cohen Costa "
    "Davies Diaz Dubois Evans Fischer Garcia Gomez Gonzalez Green Hall Hansen Hernandez Hill "
    "Ito Jackson Jensen Johnson Jones Kaur Kim Klein Kowalski Kumar Lee Lewis Lopez Martin "
    "Martinez Meyer Miller Moreau Muller Murphy Nguyen Nielsen Novak Okafor Olsen Park Patel "
    "Perez Petrov Ramirez Ricci Rodriguez Rossi Sanchez Santos Schmidt Schneider Silva Singh "
    "Smith Suzuki Tanaka Taylor Thomas Torres Wagner Walker Wang Weber White Williams Wilson "
    "Wright Yamamoto Young Zhang"
).split()
DOMAINS = (  # noqa: SIM905
    "gmail.example outlook.example yahoo.example icloud.example proton.example "
    "fastmail.example example.com example.org example.net mail.test"
).split()
CITIES = (  # noqa: SIM905
    "Amsterdam Austin Barcelona Berlin Boston Chicago Denver Dublin Lisbon London Lyon Madrid "
    "Melbourne Montreal Nairobi Oslo Paris Portland Seoul Sydney Tokyo Toronto Vienna"
).split()
COMPANIES = (  # noqa: SIM905
    "Acme Co.|Blue Fern Studio|Brightside|Copperleaf|Driftwood Labs|Evergreen Bakery|Fable & Co|"
    "Golden Hour Media|Harbor Health|Juniper Design|Kestrel Analytics|Lighthouse Learning|"
    "Maple Street Books|Northwind|Oak & Iron|Pinecone Software|Riverbend Farm|Saltwater Surf|"
    "Tidewater Consulting|Willow Yoga"
).split("|")
TAG_NAMES = (
    "Newsletter",
    "Customer",
    "Free guide",
    "Webinar attendee",
    "Podcast listener",
    "Course: Photography 101",
    "Black Friday",
    "Interested: pricing",
    "Beta tester",
    "VIP",
    "Workshop waitlist",
    "Ebook download",
    "Affiliate",
    "Survey responder",
    "Cold lead",
)
# (key, label) of the custom fields the demo subscribers fill in.
CUSTOM_FIELDS = (("city", "City"), ("company", "Company"))

# Rows are derived from random() draws made once per row in an inner SELECT (PostgreSQL does not
# inline a subquery whose output calls a volatile function, so each draw is made once, then reused). Ids come from
# nextval() in generate_series order and created_at grows with n, so newer subscribers have higher
# ids, as in a real list; subscribers per unit of time grow towards the present (exponent < 1).
SUBSCRIBERS_SQL = """
WITH new_subscribers AS (
  INSERT INTO subscribers_subscriber (
    id, account_id, email, first_name, fields, state, source, consent_at, consent_method,
    consent_ip, created_at, updated_at, confirmed_at, unsubscribed_at)
  SELECT id, %(account_id)s,
    lower(first || '.' || last) || '+' || id || '@' || domain,
    CASE WHEN r_noname < 0.08 THEN '' ELSE first END,
    jsonb_strip_nulls(jsonb_build_object(
      'city', CASE WHEN r_field < 0.6 THEN city END,
      'company', CASE WHEN r_field < 0.3 THEN company END)),
    state, source, created_at,
    CASE source WHEN 'Import: old-list.csv' THEN 'import' WHEN 'Added by hand' THEN 'manual'
      WHEN 'API' THEN 'api' ELSE 'double opt-in form' END,
    CASE WHEN source LIKE 'Form%%' OR source LIKE 'Landing%%'
      THEN ('203.0.113.' || (1 + floor(r_ip * 254))::int)::inet END,
    created_at,
    CASE WHEN state = 'unsubscribed' THEN unsubscribed_at ELSE created_at END,
    CASE WHEN state <> 'unconfirmed' THEN created_at + interval '3 minutes' END,
    CASE WHEN state = 'unsubscribed' THEN unsubscribed_at END
  FROM (
    SELECT id, first, last, domain, city, company, r_noname, r_field, r_ip,
      CASE WHEN r_state < 0.05 THEN 'unconfirmed' WHEN r_state < 0.12 THEN 'unsubscribed'
           WHEN r_state < 0.145 THEN 'bounced' WHEN r_state < 0.15 THEN 'complained'
           ELSE 'active' END AS state,
      CASE WHEN r_source < 0.45 THEN 'Form: Homepage signup'
           WHEN r_source < 0.65 THEN 'Landing page: Free guide'
           WHEN r_source < 0.85 THEN 'Import: old-list.csv'
           WHEN r_source < 0.90 THEN 'Added by hand' ELSE 'API' END AS source,
      created_at,
      least(%(now)s, created_at + interval '1 hour' + (%(now)s - created_at) * r_unsub / 2)
        AS unsubscribed_at
    FROM (
      SELECT nextval(pg_get_serial_sequence('subscribers_subscriber', 'id')) AS id,
        (%(first_names)s::text[])[1 + floor(random() * %(first_count)s)::int] AS first,
        (%(last_names)s::text[])[1 + floor(random() * %(last_count)s)::int] AS last,
        (%(domains)s::text[])[1 + floor(random() ^ 2 * %(domain_count)s)::int] AS domain,
        (%(cities)s::text[])[1 + floor(random() * %(city_count)s)::int] AS city,
        (%(companies)s::text[])[1 + floor(random() * %(company_count)s)::int] AS company,
        random() AS r_noname, random() AS r_field, random() AS r_ip, random() AS r_state,
        random() AS r_source, random() AS r_unsub,
        %(start)s + %(span)s * power((n - 1 + random()) / %(total)s, 0.6) AS created_at
      FROM generate_series(%(first_n)s, %(last_n)s) AS n
    ) AS draws
  ) AS rows
  RETURNING id
)
SELECT min(id), max(id) FROM new_subscribers
"""

# Tags per subscriber: 45% none, 35% one, 13% two, 7% three. The first tag is skewed towards
# the start of the tag list (so tag sizes range from large to small); the others follow at a
# stride that keeps the three distinct.
# Draws are made in id order, whatever index the planner scans, so a seed gives the same tags.
TAGGINGS_SQL = """
INSERT INTO subscribers_tagging (account_id, tag_id, subscriber_id, created_at)
SELECT %(account_id)s,
  (%(tag_ids)s::bigint[])[1 + (first_tag + (j - 1) * stride) %% %(tag_count)s],
  id, created_at
FROM (
  SELECT id, created_at,
    floor(random() ^ 2 * %(tag_count)s)::int AS first_tag,
    1 + floor(random() * greatest(1, (%(tag_count)s - 1) / 2))::int AS stride,
    least(%(tag_count)s, CASE WHEN r < 0.45 THEN 0 WHEN r < 0.80 THEN 1
                              WHEN r < 0.93 THEN 2 ELSE 3 END) AS tags
  FROM (
    SELECT id, created_at, random() AS r FROM (
      SELECT id, created_at FROM subscribers_subscriber
      WHERE account_id = %(account_id)s AND id BETWEEN %(first_id)s AND %(last_id)s
      ORDER BY id
    ) AS batch
  ) AS s
) AS picks
CROSS JOIN LATERAL generate_series(1, tags) AS j
"""


@dataclass(frozen=True)
class SeedResult:
    account: Account
    subscribers: int
    taggings: int
    tags: list[Tag]


def demo_account_create(
    *, name: str = DEMO_ACCOUNT_NAME, owner_email: str = DEMO_OWNER_EMAIL
) -> tuple[Account, str | None]:
    """A new account owned by `owner_email`, and that user's new password if the user is new.

    An existing user keeps their password (None is returned): seeding never changes a login.
    """
    with transaction.atomic():
        owner = User.objects.filter(email=owner_email.lower()).first()
        password = None
        if owner is None:
            password = secrets.token_urlsafe(12)
            owner = User.objects.create_user(email=owner_email, password=password)
        account = account_create(owner=owner, name=name)
        account.sender_name = name
        account.postal_address = "1 Example Street, Springfield"
        account.save(update_fields=["sender_name", "postal_address"])
    return account, password


def demo_tag_names(count: int) -> list[str]:
    """`count` tag names: the realistic list first, then numbered rounds of it."""
    return [
        TAG_NAMES[i % len(TAG_NAMES)]
        + (f" {i // len(TAG_NAMES) + 1}" if i >= len(TAG_NAMES) else "")
        for i in range(count)
    ]


def demo_data_seed(
    *,
    account: Account,
    subscribers: int,
    tags: int = 10,
    seed: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> SeedResult:
    """Adds `subscribers` demo subscribers, with tags and custom field values, to `account`.

    1. Gets or creates the tags (by name, so a second run reuses them) and the custom fields.
    2. Inserts the subscribers in batches of `batch_size`, one statement and one transaction
       each, then their taggings (a second statement). Outside a transaction the taggings of a
       batch are written on a second connection while the next batch of subscribers is inserted
       (the foreign-key checks at each commit make both halves equally costly, so this halves the
       wall time on two cores); inside one, a second connection could not see the new rows, so
       everything runs on this connection. `progress(done, total)` is called after each batch.
    3. ANALYZEs the tables so the planner sees the new sizes at once.

    Running it again adds more subscribers with new addresses, dated after the newest existing
    one; existing subscribers are left alone. `seed` makes the generated values reproducible
    (ids and timestamps still depend on the database and the clock).
    """
    if subscribers < 0:
        raise ValueError("The number of subscribers cannot be negative")
    if tags < 0:
        raise ValueError("The number of tags cannot be negative")
    if batch_size < 1:
        raise ValueError("The batch size must be at least 1")
    tag_rows = [tag_get_or_create(account=account, name=name) for name in demo_tag_names(tags)]
    CustomField.objects.bulk_create(
        [CustomField(account=account, key=key, label=label) for key, label in CUSTOM_FIELDS],
        ignore_conflicts=True,
    )
    now = timezone.now()
    newest = (
        Subscriber.objects.filter(account=account)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    start = max(now - HISTORY, newest) if newest else now - HISTORY
    params = {
        "account_id": account.pk,
        "now": now,
        "start": start,
        "span": now - start,
        "total": max(subscribers, 1),
        "first_names": list(FIRST_NAMES),
        "first_count": len(FIRST_NAMES),
        "last_names": list(LAST_NAMES),
        "last_count": len(LAST_NAMES),
        "domains": list(DOMAINS),
        "domain_count": len(DOMAINS),
        "cities": list(CITIES),
        "city_count": len(CITIES),
        "companies": list(COMPANIES),
        "company_count": len(COMPANIES),
        "tag_ids": [tag.pk for tag in tag_rows],
        "tag_count": len(tag_rows),
    }

    def tag_batch(batch: int, first_id: int, last_id: int) -> int:
        if not tag_rows or first_id is None:
            return 0
        batch_params = {**params, "first_id": first_id, "last_id": last_id}
        return _batch_execute(TAGGINGS_SQL, batch_params, seed=_batch_seed(seed, batch, "tags"))

    parallel = not connection.in_atomic_block
    taggings = 0
    pending: Future | None = None
    tagger = ThreadPoolExecutor(max_workers=1) if parallel else None
    try:
        for batch, first_n in enumerate(range(1, subscribers + 1, batch_size)):
            last_n = min(first_n + batch_size - 1, subscribers)
            first_id, last_id = _batch_execute(
                SUBSCRIBERS_SQL,
                {**params, "first_n": first_n, "last_n": last_n},
                seed=_batch_seed(seed, batch, "subscribers"),
                fetch=True,
            )
            if pending is not None:
                taggings += pending.result()
                if progress:
                    progress(first_n - 1, subscribers)
            if tagger is not None:
                pending = tagger.submit(tag_batch, batch, first_id, last_id)
            else:
                taggings += tag_batch(batch, first_id, last_id)
                if progress:
                    progress(last_n, subscribers)
        if pending is not None:
            taggings += pending.result()
            if progress:
                progress(subscribers, subscribers)
    finally:
        if tagger is not None:
            tagger.submit(connections.close_all).result()
            tagger.shutdown()
    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE subscribers_subscriber, subscribers_tagging, subscribers_tag,"
            " subscribers_subscribercount"
        )
    counts = dict(
        Tag.objects.filter(pk__in=[tag.pk for tag in tag_rows]).values_list(
            "pk", "subscriber_count"
        )
    )
    for tag in tag_rows:
        tag.subscriber_count = counts[tag.pk]
    return SeedResult(account=account, subscribers=subscribers, taggings=taggings, tags=tag_rows)


def _batch_seed(seed: int | None, batch: int, part: str) -> float | None:
    """A setseed() value per batch and part, so the data does not depend on which connection ran it."""
    if seed is None:
        return None
    return random.Random(f"{seed}:{batch}:{part}").uniform(-1.0, 1.0)


def _batch_execute(sql: str, params: dict, *, seed: float | None, fetch: bool = False):
    """Runs one batch statement in its own transaction: the (min id, max id) it inserted, or its row count."""
    with transaction.atomic(), connection.cursor() as cursor:
        # The plans are costed in millions, which would JIT-compile them for no gain.
        cursor.execute("SET LOCAL jit = off")
        if seed is not None:
            cursor.execute("SELECT setseed(%s)", [seed])
        cursor.execute(sql, params)
        return cursor.fetchone() if fetch else cursor.rowcount
