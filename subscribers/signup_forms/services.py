"""Every write a creator makes to a signup form: create, edit, archive, incentive file."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from convertkit.models import Account
from subscribers.models import CustomField, Form, FormIncentiveFile, FormWording
from subscribers.services import tag_get_or_create

# The words a subscriber agrees to: changing any of them starts a new wording version.
WORDING_ATTRIBUTES = ("headline", "description", "button_text", "consent_text", "double_opt_in")
# Every other attribute a creator may edit through form_update.
EDITABLE_ATTRIBUTES = (
    "name",
    *WORDING_ATTRIBUTES,
    "style",
    "success_action",
    "success_message",
    "redirect_url",
    "confirmation_subject",
    "confirmation_body",
    "incentive_url",
    "incentive_subject",
    "incentive_body",
)
MAX_INCENTIVE_FILE_BYTES = 20 * 1024 * 1024
MAX_FIELD_LABEL_LENGTH = 100
STANDARD_FIELD_LABELS = {"email": "Email address", "first_name": "First name"}


class FormFieldsInvalid(ValueError):
    """The list of fields names a field the account does not have, or drops the email."""


def form_fields_clean(*, account: Account, fields: list[dict]) -> list[dict]:
    """The fields as stored: email first and required, then first name and the account's custom
    fields in the given order, each at most once, with a label; FormFieldsInvalid otherwise."""
    custom_keys = set(CustomField.objects.filter(account=account).values_list("key", flat=True))
    cleaned: list[dict] = []
    seen: set[str] = set()
    for field in fields:
        key = str(field.get("key", ""))
        if key in seen:
            continue
        if key not in Form.STANDARD_FIELDS and key not in custom_keys:
            raise FormFieldsInvalid(f"The account has no field “{key[:50]}”.")
        label = " ".join(str(field.get("label") or "").split())[:MAX_FIELD_LABEL_LENGTH]
        cleaned.append(
            {
                "key": key,
                "label": label or STANDARD_FIELD_LABELS.get(key) or key,
                "required": key == "email" or bool(field.get("required")),
            }
        )
        seen.add(key)
    if "email" not in seen:
        cleaned.insert(
            0, {"key": "email", "label": STANDARD_FIELD_LABELS["email"], "required": True}
        )
    else:
        cleaned.sort(key=lambda field: field["key"] != "email")
    return cleaned


def _wording_record(form: Form) -> None:
    FormWording.objects.create(
        form=form,
        version=form.wording_version,
        **{name: getattr(form, name) for name in WORDING_ATTRIBUTES},
    )


def form_create(*, account: Account, name: str, **values) -> Form:
    """A new live form with an email field, its first wording version recorded."""
    fields = values.pop("fields", None) or [{"key": "email"}]
    tag_names = values.pop("tag_names", ())
    with transaction.atomic():
        form = Form.objects.create(
            account=account,
            name=name,
            fields=form_fields_clean(account=account, fields=fields),
            **{key: value for key, value in values.items() if key in EDITABLE_ATTRIBUTES},
        )
        _wording_record(form)
        form.tags.set([tag_get_or_create(account=account, name=tag) for tag in tag_names])
    return form


def form_update(
    *,
    form: Form,
    values: dict,
    fields: list[dict] | None = None,
    tag_names: list[str] | None = None,
) -> Form:
    """Applies the given attributes (EDITABLE_ATTRIBUTES only), fields and tags.

    A change to the words a subscriber agrees to bumps wording_version and records the new text,
    so every consent record keeps pointing at what that subscriber saw.
    """
    unknown = set(values) - set(EDITABLE_ATTRIBUTES)
    if unknown:
        raise ValueError(f"Not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        form = Form.objects.select_for_update().get(pk=form.pk)
        wording_changed = any(
            name in values and values[name] != getattr(form, name) for name in WORDING_ATTRIBUTES
        )
        for name, value in values.items():
            setattr(form, name, value)
        if fields is not None:
            form.fields = form_fields_clean(account=form.account, fields=fields)
        if wording_changed:
            form.wording_version += 1
        form.save()
        if wording_changed:
            _wording_record(form)
        if tag_names is not None:
            form.tags.set([tag_get_or_create(account=form.account, name=tag) for tag in tag_names])
    return form


def form_archive(*, form: Form) -> None:
    """Takes the form off its page and the list; its signups (consent records) stay."""
    Form.objects.filter(pk=form.pk, archived_at__isnull=True).update(archived_at=timezone.now())


def form_incentive_file_set(*, form: Form, name: str, content_type: str, data: bytes) -> None:
    """Stores (or replaces) the form's incentive file; ValueError when it is too large or empty."""
    if not data:
        raise ValueError("The file is empty.")
    if len(data) > MAX_INCENTIVE_FILE_BYTES:
        raise ValueError(f"The file is larger than {MAX_INCENTIVE_FILE_BYTES // (1024 * 1024)} MB.")
    FormIncentiveFile.objects.update_or_create(
        form=form,
        defaults={
            "name": name[:200] or "download",
            "content_type": content_type[:100] or "application/octet-stream",
            "size": len(data),
            "data": data,
        },
    )


def form_incentive_file_remove(*, form: Form) -> None:
    FormIncentiveFile.objects.filter(form=form).delete()
