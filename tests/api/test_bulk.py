"""Kit's bulk endpoints at /v4/bulk/: Kit's documented shapes, the answer at once up to 100 items
and the callback beyond (to a real local HTTP receiver), per-item failures beside what was
applied, the 413 and 422 that store nothing, another account's ids, and the job's re-run."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import OperationalError

from api import bulk_jobs
from api.models import BulkBatch
from automations.models import Event, EventKind
from convertkit.models import Job
from subscribers.models import Signup, Subscriber, Suppression, Tag, Tagging, email_hash
from subscribers.signup_forms.services import form_create
from tests.api import kit_examples_bulk as kit
from tests.api.kit_examples import assert_kit_shape
from tests.automations.test_outbox import listen_to_everything
from tests.factories import CustomFieldFactory, SubscriberFactory, TagFactory, TaggingFactory

State = Subscriber.State


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if status == 200:
            self.server.posted.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    """A local HTTP server taking callbacks: `.bodies` as they came, `.statuses` to answer
    (200 once they run out), `.posted` set at the first 200; callbacks to loopback allowed."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies, server.statuses, server.posted = [], [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_port}/kit/bulk"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def run_jobs(eager_celery, django_capture_on_commit_callbacks):
    """Runs the jobs a request queues, in this process, once it has answered."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def listening(account_a):
    listen_to_everything(account_a)


def _events(kind):
    return sorted(
        (row.subscriber_id, row.object_id, row.detail) for row in Event.objects.filter(kind=kind)
    )


# Subscribers ---------------------------------------------------------------------------------


def test_bulk_create_subscribers_answers_at_once_with_each_failure_beside_the_others(
    api_a, account_a, listening
):
    CustomFieldFactory(account=account_a, key="company", label="Company")
    kept = SubscriberFactory(account=account_a, email="kept@example.com", first_name="Old")
    gone = SubscriberFactory(account=account_a, email="gone@example.com", state=State.UNSUBSCRIBED)
    body = {
        "subscribers": [
            {
                "email_address": "New@Example.com",
                "first_name": "Camille",
                "fields": {"company": "Acme", "nope": "x"},
            },
            {"email_address": "kept@example.com", "first_name": "Kept"},
            {"email_address": "gone@example.com", "first_name": "Back"},
            {"email_address": "benito@", "first_name": "Benito"},
            {"email_address": "odd@example.com", "state": "inactive"},
            "not an object",
        ],
        "callback_url": None,
    }

    response = api_a.post("/v4/bulk/subscribers", body)

    assert response.status_code == 200, response.content
    answer = response.json()
    named = answer["failures"][0]
    assert_kit_shape({**answer, "failures": [named]}, kit.BULK_CREATE_SUBSCRIBERS)
    assert [
        (row["email_address"], row["first_name"], row["state"]) for row in answer["subscribers"]
    ] == [
        ("new@example.com", "Camille", "active"),
        ("kept@example.com", "Kept", "active"),
        ("gone@example.com", "Back", "cancelled"),
    ]
    assert [failure["errors"] for failure in answer["failures"]] == [
        ["Email address is invalid"],
        ["state must be one of active, cancelled, bounced, complained"],
        ["Subscriber must be an object"],
    ]
    assert answer["failures"][0]["subscriber"]["first_name"] == "Benito"
    new = Subscriber.objects.get(account=account_a, email="new@example.com")
    assert (new.fields, new.source, new.state) == ({"company": "Acme"}, "API", State.ACTIVE)
    assert answer["subscribers"][1]["id"] == kept.id
    gone.refresh_from_db()
    assert (gone.first_name, gone.state) == ("Back", State.UNSUBSCRIBED)
    assert not Subscriber.objects.filter(email__in=["odd@example.com"]).exists()
    assert _events(EventKind.FIELD_CHANGED) == [(new.id, None, "company")]


def test_bulk_create_gives_new_subscribers_kits_states_and_refuses_erased_addresses(
    api_a, account_a
):
    Suppression.objects.create(
        account=account_a, email_hash=email_hash("erased@example.com"), reason="deleted"
    )
    body = {
        "subscribers": [
            {"email_address": "left@example.com", "state": "cancelled"},
            {"email_address": "hard@example.com", "state": "bounced"},
            {"email_address": "erased@example.com"},
        ]
    }

    answer = api_a.post("/v4/bulk/subscribers", body).json()

    states = dict(Subscriber.objects.filter(account=account_a).values_list("email", "state"))
    assert states == {"left@example.com": State.UNSUBSCRIBED, "hard@example.com": State.BOUNCED}
    assert [row["state"] for row in answer["subscribers"]] == ["cancelled", "bounced"]
    assert answer["failures"] == [
        {
            "subscriber": {
                "first_name": None,
                "email_address": "erased@example.com",
                "state": "active",
                "created_at": None,
            },
            "errors": [bulk_jobs.SUPPRESSED],
        }
    ]


def test_a_large_request_is_202_then_its_result_is_posted_to_the_callback(
    api_a, account_a, receiver, run_jobs, listening
):
    CustomFieldFactory(account=account_a, key="city", label="City")
    body = {
        "subscribers": [
            {"email_address": f"reader{n}@example.com", "fields": {"city": "Lyon"}}
            for n in range(101)
        ]
        + [{"email_address": "not-an-address", "first_name": "Benito"}],
        "callback_url": receiver.url,
    }

    with run_jobs():
        response = api_a.post("/v4/bulk/subscribers", body)
        assert (response.status_code, response.json()) == (202, {})
        assert Subscriber.objects.filter(account=account_a).count() == 0

    [posted] = receiver.bodies
    assert_kit_shape(posted, kit.BULK_CREATE_SUBSCRIBERS)
    assert len(posted["subscribers"]) == 101
    assert posted["failures"][0]["subscriber"]["email_address"] == "not-an-address"
    assert Subscriber.objects.filter(account=account_a, fields={"city": "Lyon"}).count() == 101
    assert len(_events(EventKind.FIELD_CHANGED)) == 101
    job = Job.objects.get(account=account_a, kind=Job.Kind.BULK_API)
    assert (job.state, job.processed, job.total, job.error_count) == (Job.State.DONE, 102, 102, 1)
    assert job.message == "101 done, 1 failed; result posted to the callback URL"
    [problem] = job.errors.all()
    assert (problem.message, json.loads(problem.value)["email_address"]) == (
        "Email address is invalid",
        "not-an-address",
    )
    assert not BulkBatch.objects.filter(job=job).exists()


def test_a_callback_receiver_that_is_down_leaves_the_job_done_saying_so(
    api_a, account_a, alice_client, receiver, run_jobs, monkeypatch
):
    monkeypatch.setattr(bulk_jobs, "CALLBACK_RETRY_PAUSES", (0, 0))
    receiver.shutdown()
    receiver.server_close()
    body = {"tags": [{"name": f"t{n}"} for n in range(101)], "callback_url": receiver.url}

    with run_jobs():
        api_a.post("/v4/bulk/tags", body)

    job = Job.objects.get(account=account_a, kind=Job.Kind.BULK_API)
    assert job.state == Job.State.DONE
    assert job.message == "101 done, 0 failed; callback failed: connection refused"
    assert Tag.objects.filter(account=account_a).count() == 101
    page = alice_client.get(f"/jobs/{job.id}/")
    assert page.status_code == 200
    assert "API: create 101 tags" in page.content.decode()


def test_a_job_run_again_after_a_crash_redoes_no_batch_and_calls_back_once(
    api_a, account_a, receiver, run_jobs, monkeypatch
):
    action = bulk_jobs.ACTIONS["tags"]
    monkeypatch.setitem(bulk_jobs.ACTIONS, "tags", dataclasses.replace(action, batch_size=60))
    api_a.post(
        "/v4/bulk/tags",
        {"tags": [{"name": f"t{n}"} for n in range(150)], "callback_url": receiver.url},
    )
    job = Job.objects.get(account=account_a, kind=Job.Kind.BULK_API)
    assert BulkBatch.objects.filter(job=job).count() == 3
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING)
    assert bulk_jobs._batch_run(job.pk)  # the worker died after its first batch
    Tag.objects.filter(account=account_a, name="t0").delete()

    bulk_jobs.bulk_job_run(job_id=job.pk)
    bulk_jobs.bulk_job_run(job_id=job.pk)

    [posted] = receiver.bodies
    assert [tag["name"] for tag in posted["tags"]] == [f"t{n}" for n in range(150)]
    # The first batch was not applied again: the tag deleted since stays deleted.
    assert Tag.objects.filter(account=account_a).count() == 149
    job.refresh_from_db()
    assert (job.state, job.processed) == (Job.State.DONE, 150)


def test_a_callback_answered_500_is_tried_again(receiver):
    receiver.statuses = [500, 503]
    pauses = []

    problem = bulk_jobs.bulk_callback_post(receiver.url, {"failures": []}, pause=pauses.append)

    assert problem is None
    assert len(receiver.bodies) == 3
    assert pauses == list(bulk_jobs.CALLBACK_RETRY_PAUSES)


def test_a_callback_refused_for_good_is_not_tried_again(receiver):
    receiver.statuses = [410]
    assert bulk_jobs.bulk_callback_post(receiver.url, {}, pause=None) == "callback answered 410"
    assert len(receiver.bodies) == 1


# Bad requests --------------------------------------------------------------------------------


def test_a_request_past_the_size_limit_is_413_and_stores_nothing(api_a, account_a, settings):
    settings.API_BULK_QUEUED_BYTES = 2000
    body = {"subscribers": [{"email_address": f"r{n}@example.com"} for n in range(100)]}

    response = api_a.post("/v4/bulk/subscribers", body)

    assert (response.status_code, response.json()) == (413, kit.QUEUE_FULL)
    assert not Subscriber.objects.filter(account=account_a).exists()


def test_a_bulk_body_may_be_larger_than_the_sites_upload_limit(api_a, account_a, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"tags": [{"name": f"A tag with a long name, number {n}"} for n in range(100)]}

    response = api_a.post("/v4/bulk/tags", body)

    assert response.status_code == 200
    assert Tag.objects.filter(account=account_a).count() == 100


def test_requests_queued_beyond_the_accounts_limit_are_413(api_a, account_a, settings, receiver):
    body = {"tags": [{"name": f"t{n}"} for n in range(101)]}
    size = len(json.dumps(body))
    settings.API_BULK_QUEUED_BYTES = size * 2

    statuses = [api_a.post("/v4/bulk/tags", body).status_code for _ in range(3)]

    assert statuses == [202, 202, 413]
    assert Job.objects.filter(account=account_a, kind=Job.Kind.BULK_API).count() == 2
    assert not Tag.objects.filter(account=account_a).exists()


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        ("/v4/bulk/subscribers", {"subscribers": []}, ["No subscribers included for processing"]),
        ("/v4/bulk/tags", {"tags": "x"}, ["No tags included for processing"]),
        ("/v4/bulk/tags/subscribers", {}, ["No taggings included for processing"]),
        (
            "/v4/bulk/custom_fields/subscribers",
            {"custom_field_values": None},
            ["No custom field values included for processing"],
        ),
        ("/v4/bulk/forms/subscribers", [], ["The request body must be a JSON object"]),
        (
            "/v4/bulk/forms/subscribers",
            {"callback_url": "ftp://example.com/x"},
            ["No additions included for processing", "callback_url must be an http or https URL"],
        ),
    ],
)
def test_a_malformed_body_is_422_with_each_problem(api_a, path, body, errors):
    response = api_a.post(path, body)
    assert (response.status_code, response.json()) == (422, {"errors": errors})


def test_a_body_that_is_not_json_is_422(api_a):
    response = api_a.post("/v4/bulk/tags", raw="{nope")
    assert (response.status_code, response.json()) == (
        422,
        {"errors": ["The request body is not valid JSON"]},
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/cb",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://[::ffff:192.168.0.1]/",
    ],
)
def test_a_callback_to_a_private_address_is_422_and_nothing_is_stored(api_a, account_a, url):
    response = api_a.post("/v4/bulk/tags", {"tags": [{"name": "x"}], "callback_url": url})
    assert response.status_code == 422
    [problem] = response.json()["errors"]
    assert problem.startswith("callback_url must be a public address")
    assert not Tag.objects.filter(account=account_a).exists()


def test_bulk_endpoints_need_a_key(db):
    from tests.api.conftest import ApiClient

    assert ApiClient(None).post("/v4/bulk/tags", {"tags": [{"name": "x"}]}).status_code == 401


# Tags and taggings ---------------------------------------------------------------------------


def test_bulk_create_tags_returns_existing_ones_and_creates_the_others(api_a, account_a):
    existing = TagFactory(account=account_a, name="Existing Tag")
    body = {
        "tags": [
            {"name": "existing tag"},
            {"name": "  Attended   Event "},
            {"name": " "},
            {"name": "attended event"},
        ]
    }

    answer = api_a.post("/v4/bulk/tags", body).json()

    assert set(answer) == {"tags", "failures"}
    assert_kit_shape({"tags": answer["tags"]}, kit.BULK_CREATE_TAGS)
    assert [(tag["name"]) for tag in answer["tags"]] == ["Existing Tag", "Attended Event"]
    assert answer["tags"][0]["id"] == existing.id
    assert answer["failures"] == [{"tag": {"name": " "}, "errors": ["Name can't be blank"]}]
    assert Tag.objects.filter(account=account_a).count() == 2


def test_bulk_tag_tags_by_id_or_address_and_never_another_accounts(
    api_a, account_a, account_b, listening
):
    tag = TagFactory(account=account_a)
    ann = SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")
    bea = SubscriberFactory(account=account_a)
    theirs_tag, theirs = TagFactory(account=account_b), SubscriberFactory(account=account_b)
    TaggingFactory(tag=tag, subscriber=bea)
    body = {
        "taggings": [
            {"tag_id": tag.id, "subscriber_id": ann.id},
            {"tag_id": tag.id, "email_address": bea.email},
            {"tag_id": tag.id, "subscriber_id": theirs.id},
            {"tag_id": theirs_tag.id, "subscriber_id": ann.id},
        ]
    }

    answer = api_a.post("/v4/bulk/tags/subscribers", body).json()

    assert_kit_shape({"subscribers": answer["subscribers"]}, kit.BULK_TAG_SUBSCRIBERS)
    assert [row["id"] for row in answer["subscribers"]] == [ann.id, bea.id]
    assert_kit_shape(answer["failures"][0], kit.TAGGING_NO_SUBSCRIBER)
    assert_kit_shape(answer["failures"][1], kit.TAGGING_NO_TAG)
    assert answer["failures"][1]["tagging"] == {"tag_id": None, "subscriber_id": ann.id}
    assert set(Tagging.objects.values_list("tag_id", "subscriber_id")) == {
        (tag.id, ann.id),
        (tag.id, bea.id),
    }
    assert _events(EventKind.TAG_ADDED) == [(ann.id, tag.id, "")]


def test_bulk_untag_removes_taggings_and_answers_the_failures(
    api_a, account_a, account_b, listening
):
    tagging = TaggingFactory(tag=TagFactory(account=account_a), subscriber__email="ann@example.com")
    theirs = TaggingFactory(tag=TagFactory(account=account_b))
    body = {
        "taggings": [
            {"tag_id": tagging.tag_id, "email_address": "ANN@example.com"},
            {"tag_id": theirs.tag_id, "subscriber_id": theirs.subscriber_id},
        ]
    }

    response = api_a.delete("/v4/bulk/tags/subscribers", body)

    assert response.status_code == 200
    assert response.json() == {
        "failures": [
            {
                "errors": ["Tag does not exist", "Subscriber does not exist"],
                "tagging": {"tag_id": None, "subscriber_id": None},
            }
        ]
    }
    assert list(Tagging.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert _events(EventKind.TAG_REMOVED) == [(tagging.subscriber_id, tagging.tag_id, "")]


# Custom field values and forms ---------------------------------------------------------------


def test_bulk_field_values_set_and_clear_values_of_the_accounts_fields_only(
    api_a, account_a, account_b, listening
):
    last_name = CustomFieldFactory(account=account_a, key="last_name", label="Last name")
    company = CustomFieldFactory(account=account_a, key="company", label="Company")
    theirs = CustomFieldFactory(account=account_b, key="secret", label="Secret")
    ann = SubscriberFactory(account=account_a, fields={"company": "Old", "other": "kept"})
    body = {
        "custom_field_values": [
            {"subscriber_id": ann.id, "subscriber_custom_field_id": last_name.id, "value": "Smith"},
            {"subscriber_id": ann.id, "subscriber_custom_field_id": company.id, "value": ""},
            {"subscriber_id": ann.id, "subscriber_custom_field_id": theirs.id, "value": "Test"},
            {"subscriber_id": 0, "subscriber_custom_field_id": last_name.id, "value": "Jones"},
        ],
        "callback_url": None,
    }

    answer = api_a.post("/v4/bulk/custom_fields/subscribers", body).json()

    assert_kit_shape({"custom_field_values": answer["custom_field_values"]}, kit.BULK_FIELD_VALUES)
    assert len(answer["custom_field_values"]) == 2
    assert_kit_shape(answer["failures"][0], kit.FIELD_VALUE_NO_FIELD)
    assert_kit_shape(answer["failures"][1], kit.FIELD_VALUE_NO_SUBSCRIBER)
    ann.refresh_from_db()
    assert ann.fields == {"last_name": "Smith", "other": "kept"}
    assert _events(EventKind.FIELD_CHANGED) == [
        (ann.id, None, "company"),
        (ann.id, None, "last_name"),
    ]


def test_bulk_add_to_forms_signs_up_through_each_form(api_a, account_a, account_b):
    form = form_create(
        account=account_a, name="Sidebar", double_opt_in=False, tag_names=["sidebar"]
    )
    theirs = form_create(account=account_b, name="Theirs", double_opt_in=False)
    ann = SubscriberFactory(account=account_a, first_name="Ann")
    bounced = SubscriberFactory(account=account_a, state=State.BOUNCED)
    body = {
        "additions": [
            {"form_id": form.id, "subscriber_id": ann.id, "referrer": kit.REFERRER},
            {"form_id": theirs.id, "subscriber_id": ann.id, "referrer": kit.REFERRER},
            {"form_id": form.id, "subscriber_id": bounced.id},
        ]
    }

    answer = api_a.post("/v4/bulk/forms/subscribers", body).json()

    assert_kit_shape({"subscribers": answer["subscribers"]}, kit.BULK_ADD_TO_FORMS)
    assert answer["subscribers"][0]["referrer_utm_parameters"]["source"] == "facebook"
    assert_kit_shape(answer["failures"][0], kit.FORM_NO_FORM)
    assert answer["failures"][1]["errors"] == ["A bounced subscriber cannot be added to a form"]
    assert list(Signup.objects.values_list("form_id", "subscriber_id")) == [(form.id, ann.id)]
    assert Tagging.objects.filter(subscriber=ann, tag__name="sidebar").exists()
    assert not Signup.objects.filter(form=theirs).exists()


# Tenancy -------------------------------------------------------------------------------------


def _snapshot():
    return (
        list(Subscriber.objects.order_by("id").values_list("id", "email", "first_name", "fields")),
        list(Tagging.objects.order_by("id").values_list("tag_id", "subscriber_id")),
        list(Signup.objects.order_by("id").values_list("form_id", "subscriber_id")),
        list(Tag.objects.order_by("id").values_list("account_id", "name")),
    )


@pytest.mark.parametrize(
    ("method", "path", "item", "echo"),
    [
        (
            "post",
            "/v4/bulk/tags/subscribers",
            {"tag_id": "{tag}", "subscriber_id": "{subscriber}"},
            "tagging",
        ),
        (
            "delete",
            "/v4/bulk/tags/subscribers",
            {"tag_id": "{tag}", "subscriber_id": "{subscriber}"},
            "tagging",
        ),
        (
            "post",
            "/v4/bulk/tags/subscribers",
            {"tag_id": "{tag}", "email_address": "ann@example.com"},
            "tagging",
        ),
        (
            "post",
            "/v4/bulk/custom_fields/subscribers",
            {
                "subscriber_id": "{subscriber}",
                "subscriber_custom_field_id": "{field}",
                "value": "x",
            },
            "custom_field_value",
        ),
        (
            "post",
            "/v4/bulk/forms/subscribers",
            {"form_id": "{form}", "subscriber_id": "{subscriber}"},
            "subscription",
        ),
    ],
)
def test_another_accounts_ids_are_failures_and_nothing_changes(
    api_b, account_a, method, path, item, echo
):
    ann = SubscriberFactory(account=account_a, email="ann@example.com", fields={"city": "Lyon"})
    tag = TagFactory(account=account_a)
    TaggingFactory(tag=tag, subscriber=ann)
    ids = {
        "tag": tag.id,
        "subscriber": ann.id,
        "field": CustomFieldFactory(account=account_a, key="city", label="City").id,
        "form": form_create(account=account_a, name="A's", double_opt_in=False).id,
    }
    item = {
        key: ids[value[1:-1]] if value.startswith("{") else value for key, value in item.items()
    }
    before = _snapshot()

    response = api_b.call(method, path, {_LIST_KEYS[path]: [item]})

    assert response.status_code == 200
    [failure] = response.json()["failures"]
    assert "does not exist" in " ".join(failure["errors"])
    assert failure[echo]["subscriber_id"] is None
    assert _snapshot() == before


_LIST_KEYS = {
    "/v4/bulk/tags/subscribers": "taggings",
    "/v4/bulk/custom_fields/subscribers": "custom_field_values",
    "/v4/bulk/forms/subscribers": "additions",
}


def test_an_address_of_another_account_creates_the_keys_own_subscriber(api_b, account_a, account_b):
    ann = SubscriberFactory(account=account_a, email="ann@example.com", first_name="Ann")

    answer = api_b.post(
        "/v4/bulk/subscribers",
        {"subscribers": [{"email_address": "ann@example.com", "first_name": "Other"}]},
    ).json()

    [created] = answer["subscribers"]
    assert created["id"] != ann.id
    assert Subscriber.objects.get(pk=created["id"]).account_id == account_b.id
    ann.refresh_from_db()
    assert ann.first_name == "Ann"


def test_a_batch_rolled_back_by_a_deadlock_is_applied_again(
    api_a, account_a, receiver, monkeypatch
):
    class Deadlock(Exception):
        pgcode = "40P01"

    apply = bulk_jobs.bulk_apply
    calls = []

    def deadlocked_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from Deadlock()
        return apply(**kwargs)

    monkeypatch.setattr(bulk_jobs, "bulk_apply", deadlocked_once)
    api_a.post(
        "/v4/bulk/tags",
        {"tags": [{"name": f"t{n}"} for n in range(101)], "callback_url": receiver.url},
    )
    job = Job.objects.get(account=account_a, kind=Job.Kind.BULK_API)

    bulk_jobs.bulk_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.state, job.processed, len(calls)) == (Job.State.DONE, 101, 2)
    assert len(receiver.bodies[0]["tags"]) == 101


def test_a_real_worker_runs_a_large_request_and_calls_back(
    api_a, account_a, receiver, celery_worker
):
    body = {
        "subscribers": [{"email_address": f"reader{n}@example.com"} for n in range(150)],
        "callback_url": receiver.url,
    }

    assert api_a.post("/v4/bulk/subscribers", body).status_code == 202

    assert receiver.posted.wait(timeout=60)
    [posted] = receiver.bodies
    assert len(posted["subscribers"]) == 150
    assert Subscriber.objects.filter(account=account_a).count() == 150
    # The job is marked done in the transaction the callback was posted from.
    job = Job.objects.get(account=account_a, kind=Job.Kind.BULK_API)
    deadline = time.monotonic() + 10
    while job.state != Job.State.DONE and time.monotonic() < deadline:
        time.sleep(0.05)
        job.refresh_from_db()
    assert (job.state, job.processed) == (Job.State.DONE, 150)
