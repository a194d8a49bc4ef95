"""Signing up through a public form, and confirming by email (double opt-in).

The rules:
- A new address becomes unconfirmed and gets a confirmation email when the form asks for double
  opt-in, else active at once.
- An unconfirmed address is updated with what was submitted (it is not anyone's confirmed data).
- An active subscriber gets the form's tags and nothing else changes: no confirmation needed, and
  no submitted name or field overwrites theirs.
- An unsubscribed subscriber, or an address erased at its owner's request, must confirm afresh,
  whatever the form says; what an unsubscribed one submitted waits in the Signup until they do
  (an erased address comes back as a new unconfirmed subscriber).
- A bounced or complained subscriber is never reactivated and gets no email, even after being
  erased (Suppression keeps that reason).
- The form's sequences take the subscriber in the same transaction: active at once, or (double
  opt-in) unconfirmed, to start when they confirm; the suppressed enter none.
- A signup that counts (subscribed at once, confirmed, or an active subscriber signing up
  again) records its events for rules and automations in its transaction: form_joined, and
  field_changed for each value it changes (every value of someone unconfirmed until now);
  the tags and sequences it adds record theirs. A pending signup records none.
- The browser's time zone (a hidden field) is stored when it is a real zone name, never over a
  zone already known for an active subscriber, and never blanking one.
- At most one email (confirmation, or incentive to someone already subscribed) per address per
  hour, whatever is submitted: decided under the subscriber's row lock from the Signup rows, so
  neither a race nor a Redis flush lets a second one through.
Every accepted signup leaves a Signup row: the consent record (form, wording version, time, IP,
user agent, confirmation time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.http import base36_to_int, int_to_base36

from automations.models import EventKind
from automations.outbox import events_add
from convertkit.models import is_time_zone
from sequences.entry import form_joined_enrol
from sequences.services import subscriptions_confirmed
from subscribers import tasks
from subscribers.models import (
    Form,
    Signup,
    StateChange,
    Subscriber,
    Suppression,
    email_hash,
)
from subscribers.services import field_changes_record, subscriber_tags_add
from subscribers.signup_forms.embed import HONEYPOT_FIELD, MAX_FIRST_NAME_LENGTH, TIME_ZONE_FIELD
from subscribers.validation import (
    MAX_FIELD_VALUE_LENGTH,
    is_disposable,
    normalize_email,
    one_line_text_error,
)

logger = logging.getLogger(__name__)

SIGNUP_EMAIL_INTERVAL = timedelta(hours=1)
_CONFIRM_SALT = "subscribers.form-confirm"
_INCENTIVE_SALT = "subscribers.form-incentive"


@dataclass(frozen=True)
class SignupResult:
    signup: Signup | None
    # What happened, for logs and tests; the public answer never tells (it would reveal who is
    # on the list): "confirmation", "subscribed", "tagged", each maybe followed by ", email held
    # (one per hour)", or "refused" (bounced or complained).
    outcome: str


def _apply_tags(*, form: Form, subscriber: Subscriber) -> None:
    subscriber_tags_add(subscriber=subscriber, tag_ids=list(form.tags.values_list("id", flat=True)))


def _record_state_change(*, subscriber: Subscriber, from_state: str, reason: str) -> None:
    StateChange.objects.create(
        account_id=subscriber.account_id,
        subscriber=subscriber,
        from_state=from_state,
        to_state=subscriber.state,
        reason=reason[:255],
    )


def _form_joined_record(*, form: Form, subscriber: Subscriber) -> None:
    """The form_joined event of a signup that counts: subscribed at once, confirmed, or an
    active subscriber signing up again (never a pending one)."""
    _event_record(subscriber=subscriber, kind=EventKind.FORM_JOINED, object_id=form.pk)


def _event_record(*, subscriber: Subscriber, kind: EventKind, object_id: int | None = None) -> None:
    events_add(
        account_id=subscriber.account_id,
        kind=kind,
        subscriber_ids=[subscriber.pk],
        object_id=object_id,
    )


def _fields_record(*, subscriber: Subscriber, before: dict) -> None:
    field_changes_record(
        account_id=subscriber.account_id,
        subscriber_id=subscriber.pk,
        before=before,
        after=subscriber.fields,
    )


def _apply_data(subscriber: Subscriber, data: dict) -> None:
    if data.get("first_name"):
        subscriber.first_name = data["first_name"]
    if data.get("fields"):
        subscriber.fields = {**subscriber.fields, **data["fields"]}
    if data.get("time_zone"):
        subscriber.time_zone = data["time_zone"]


def _locked_subscriber(
    *, form: Form, email: str, data: dict, state: str
) -> tuple[Subscriber, bool]:
    """The account's subscriber with this address, row-locked, created in `state` if missing;
    returns (subscriber, created). Two submissions racing for a new address create one row."""
    try:
        with transaction.atomic():
            subscriber = Subscriber.objects.create(
                account_id=form.account_id,
                email=email,
                first_name=data.get("first_name", ""),
                fields=data.get("fields", {}),
                time_zone=data.get("time_zone", ""),
                state=state,
                source=f"form: {form.name}"[:255],
            )
            return subscriber, True
    except IntegrityError:
        subscriber = Subscriber.objects.select_for_update().get(
            account_id=form.account_id, email=email
        )
        return subscriber, False


def _email_may_be_sent(subscriber: Subscriber, now) -> bool:
    return not Signup.objects.filter(
        subscriber=subscriber, email_sent_at__gt=now - SIGNUP_EMAIL_INTERVAL
    ).exists()


def signup_submit(
    *,
    form: Form,
    email: str,
    data: dict,
    ip: str | None = None,
    user_agent: str = "",
    page_url: str = "",
) -> SignupResult:
    """Records a signup of an already validated, normalised `email` with `data` ({"first_name":
    ..., "fields": {...}}) through `form`, following the rules in this module's docstring.
    Emails are queued on commit (confirmation, incentive)."""
    now = timezone.now()
    with transaction.atomic():
        suppression = (
            Suppression.objects.filter(account_id=form.account_id, email_hash=email_hash(email))
            .values_list("reason", flat=True)
            .first()
        )
        if suppression in Suppression.UNMAILABLE_REASONS:
            logger.info(
                "Signup through form %s refused: an erased %s address", form.pk, suppression
            )
            return SignupResult(signup=None, outcome="refused")
        must_confirm = form.double_opt_in or suppression is not None
        initial_state = Subscriber.State.UNCONFIRMED if must_confirm else Subscriber.State.ACTIVE
        subscriber, created = _locked_subscriber(
            form=form, email=email, data=data, state=initial_state
        )
        state = subscriber.state
        if created:
            _event_record(subscriber=subscriber, kind=EventKind.CREATED)
        if state in (Subscriber.State.BOUNCED, Subscriber.State.COMPLAINED):
            logger.info(
                "Signup of %s subscriber %s through form %s refused", state, subscriber.pk, form.pk
            )
            return SignupResult(signup=None, outcome="refused")

        signup = Signup(
            account_id=form.account_id,
            form=form,
            subscriber=subscriber,
            wording_version=form.wording_version,
            data=data,
            ip=ip,
            user_agent=user_agent[:500],
            page_url=page_url[:1000],
        )
        gained = 0
        if state == Subscriber.State.ACTIVE and not created:
            signup.outcome = Signup.Outcome.TAGGED
            _apply_tags(form=form, subscriber=subscriber)
            if data.get("time_zone") and not subscriber.time_zone:
                subscriber.time_zone = data["time_zone"]
                subscriber.save(update_fields=["time_zone", "updated_at"])
            outcome = "tagged"
        elif state == Subscriber.State.UNSUBSCRIBED or (
            state == Subscriber.State.UNCONFIRMED and must_confirm
        ):
            signup.outcome = Signup.Outcome.PENDING
            if state == Subscriber.State.UNCONFIRMED and not created:
                _apply_data(subscriber, data)
                subscriber.save(update_fields=["first_name", "fields", "time_zone", "updated_at"])
            outcome = "confirmation"
        else:
            # Single opt-in: a new address was created active; an unconfirmed one activates.
            signup.outcome = Signup.Outcome.SUBSCRIBED
            if state == Subscriber.State.UNCONFIRMED:
                _apply_data(subscriber, data)
                subscriber.state = Subscriber.State.ACTIVE
            subscriber.consent_at = now
            subscriber.consent_method = f"form “{form.name}” (single opt-in)"[:255]
            subscriber.consent_ip = ip
            subscriber.save()
            # Never confirmed before, so every value they have counts as new.
            _fields_record(subscriber=subscriber, before={})
            if state == Subscriber.State.UNCONFIRMED:
                _record_state_change(
                    subscriber=subscriber,
                    from_state=state,
                    reason=f"subscribed through form “{form.name}”",
                )
                subscriptions_confirmed(subscriber_id=subscriber.pk, now=now)
            _event_record(subscriber=subscriber, kind=EventKind.ACTIVATED)
            _apply_tags(form=form, subscriber=subscriber)
            gained = 1
            outcome = "subscribed"
        form_joined_enrol(form_id=form.pk, subscriber_id=subscriber.pk, now=now)
        if signup.outcome == Signup.Outcome.PENDING:
            send = tasks.send_form_confirmation
        else:
            _form_joined_record(form=form, subscriber=subscriber)
            send = tasks.send_form_incentive if form.has_incentive else None
        if send and _email_may_be_sent(subscriber, now):
            signup.email_sent_at = now
        elif send:
            outcome += ", email held (one per hour)"
        signup.save()
        if signup.email_sent_at:
            send.delay_on_commit(signup.pk)
        Form.objects.filter(pk=form.pk).update(
            signup_count=F("signup_count") + 1, subscriber_count=F("subscriber_count") + gained
        )
    logger.info("Signup %s through form %s: %s", signup.pk, form.pk, outcome)
    return SignupResult(signup=signup, outcome=outcome)


class ConfirmationInvalid(Exception):
    """The link is forged or damaged."""


class ConfirmationExpired(Exception):
    """The link was genuine but is older than CONFIRMATION_LINK_DAYS."""

    def __init__(self, form: Form | None):
        super().__init__("expired")
        self.form = form


def _confirmation_signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_CONFIRM_SALT, algorithm="sha256")


def _incentive_signer() -> signing.Signer:
    return signing.Signer(salt=_INCENTIVE_SALT, algorithm="sha256")


def confirmation_token(signup: Signup) -> str:
    return _confirmation_signer().sign(int_to_base36(signup.pk))


def confirmation_url(signup: Signup) -> str:
    return settings.SITE_URL + reverse("form_confirm", kwargs={"token": confirmation_token(signup)})


def _signed_id(value: str) -> int:
    try:
        signup_id = base36_to_int(value)
    except ValueError:
        raise ConfirmationInvalid from None
    if not 0 < signup_id < 2**63:
        raise ConfirmationInvalid
    return signup_id


def signup_from_confirmation_token(token: str) -> Signup:
    """The signup a confirmation link names; ConfirmationInvalid or ConfirmationExpired."""
    signer = _confirmation_signer()
    try:
        value = signer.unsign(token, max_age=timedelta(days=settings.CONFIRMATION_LINK_DAYS))
    except signing.SignatureExpired:
        value = signer.unsign(token)
        signup = Signup.objects.select_related("form").filter(pk=_signed_id(value)).first()
        raise ConfirmationExpired(signup.form if signup else None) from None
    except signing.BadSignature:
        raise ConfirmationInvalid from None
    signup = (
        Signup.objects.select_related("form", "subscriber", "account")
        .filter(pk=_signed_id(value))
        .first()
    )
    if signup is None:
        raise ConfirmationInvalid
    return signup


def signup_confirm(*, signup: Signup) -> bool:
    """Confirms a pending signup: the subscriber becomes active (from unconfirmed, or from
    unsubscribed since they asked again), what they submitted is applied, the form's tags are
    added, the sequences they waited for start (and the form's, for one who had unsubscribed),
    the consent is recorded and the incentive queued. Bounced and complained subscribers
    stay as they are. Returns whether this call confirmed it; a second call changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().get(pk=signup.subscriber_id)
        signup = Signup.objects.select_for_update().select_related("form").get(pk=signup.pk)
        if signup.outcome != Signup.Outcome.PENDING or subscriber.state in (
            Subscriber.State.BOUNCED,
            Subscriber.State.COMPLAINED,
        ):
            return False
        form = signup.form
        from_state = subscriber.state
        gained = from_state != Subscriber.State.ACTIVE
        # An unconfirmed subscriber's values were never theirs until now: all count as new.
        fields_before = {} if from_state == Subscriber.State.UNCONFIRMED else subscriber.fields
        _apply_data(subscriber, signup.data)
        subscriber.state = Subscriber.State.ACTIVE
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
        subscriber.consent_at = now
        subscriber.consent_method = f"form “{form.name}” (double opt-in)"[:255]
        subscriber.consent_ip = signup.ip
        subscriber.save()
        _fields_record(subscriber=subscriber, before=fields_before)
        if gained:
            _record_state_change(
                subscriber=subscriber,
                from_state=from_state,
                reason=f"confirmed by email after signing up through form “{form.name}”",
            )
            _event_record(subscriber=subscriber, kind=EventKind.ACTIVATED)
        Suppression.objects.filter(
            account_id=subscriber.account_id, email_hash=email_hash(subscriber.email)
        ).delete()
        subscriptions_confirmed(subscriber_id=subscriber.pk, now=now)
        _apply_tags(form=form, subscriber=subscriber)
        form_joined_enrol(form_id=form.pk, subscriber_id=subscriber.pk, now=now)
        _form_joined_record(form=form, subscriber=subscriber)
        signup.outcome = Signup.Outcome.CONFIRMED
        signup.confirmed_at = now
        signup.save(update_fields=["outcome", "confirmed_at"])
        if gained:
            Form.objects.filter(pk=form.pk).update(subscriber_count=F("subscriber_count") + 1)
        if form.has_incentive:
            tasks.send_form_incentive.delay_on_commit(signup.pk)
    return True


def incentive_token(signup: Signup) -> str:
    """Names the signup for the incentive download; never expires (it sits in an email)."""
    return _incentive_signer().sign(int_to_base36(signup.pk))


def incentive_url(signup: Signup) -> str:
    """Where the incentive is: the form's incentive URL, or the download of its file."""
    if signup.form.incentive_url:
        return signup.form.incentive_url
    return settings.SITE_URL + reverse("form_incentive", kwargs={"token": incentive_token(signup)})


def signup_from_incentive_token(token: str) -> Signup | None:
    """The signup an incentive link names, if it may have its incentive (not still pending)."""
    try:
        value = _incentive_signer().unsign(token)
        signup_id = _signed_id(value)
    except (signing.BadSignature, ConfirmationInvalid):
        return None
    return (
        Signup.objects.select_related("form")
        .filter(pk=signup_id)
        .exclude(outcome=Signup.Outcome.PENDING)
        .first()
    )


@dataclass(frozen=True)
class Submission:
    email: str
    # {"first_name": ..., "fields": {key: value}, "time_zone": ...} with only the form's fields
    data: dict
    errors: dict[str, str]  # field key (or "__all__") -> message; empty when valid
    values: dict[str, str]  # what was typed, to show the form again


def submission_clean(*, form: Form, post) -> Submission:
    """Checks a public form post against the form's fields: unknown fields, a missing or invalid
    or throwaway address, required fields, line breaks and lengths. Nothing is stored here."""

    keys = [field["key"] for field in form.fields]
    values = {key: str(post.get(key, "")).strip() for key in keys}
    errors: dict[str, str] = {}
    unknown = sorted(set(post.keys()) - set(keys) - {HONEYPOT_FIELD, TIME_ZONE_FIELD})
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:5])
        errors["__all__"] = f"This form has no field named {shown}."
    email = ""
    try:
        email = normalize_email(values.get("email", ""))
    except ValidationError as error:
        errors["email"] = error.messages[0]
    else:
        if is_disposable(email):
            errors["email"] = "Please use a permanent email address, not a throwaway one."
    data: dict = {"fields": {}}
    for field in form.fields:
        key = field["key"]
        if key == "email":
            continue
        value = values[key]
        if not value:
            if field.get("required"):
                errors[key] = f"{field['label']} is required."
            continue
        limit = MAX_FIRST_NAME_LENGTH if key == "first_name" else MAX_FIELD_VALUE_LENGTH
        problem = one_line_text_error(value, max_length=limit)
        if problem:
            errors[key] = problem
        elif key == "first_name":
            data["first_name"] = value
        else:
            data["fields"][key] = value
    if not data["fields"]:
        del data["fields"]
    # Whatever the browser said, unless it is not a zone name: ignored, never an error.
    time_zone = str(post.get(TIME_ZONE_FIELD, "")).strip()
    if is_time_zone(time_zone):
        data["time_zone"] = time_zone
    return Submission(email=email, data=data, errors=errors, values=values)
