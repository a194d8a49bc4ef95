"""Kit's custom fields at /v4/custom_fields: list, create (by label), relabel, delete.

Kit derives a field's key from its label; so does create here. A relabel keeps the key (Kit
changes it): values live under the key in every subscriber's fields, and merge tags name it."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils.text import slugify
from ninja import Router, Schema

from api.errors import ApiError
from api.pagination import page_of, page_request, paged, refuse_if
from api.views import json_answer
from convertkit.tenancy import get_for_account
from subscribers import services
from subscribers.forms import RESERVED_FIELD_KEYS
from subscribers.models import CustomField
from subscribers.validation import one_line_text_error

router = Router(tags=["Custom fields"])

MAX_LABEL_LENGTH = CustomField._meta.get_field("label").max_length
MAX_KEY_LENGTH = CustomField._meta.get_field("key").max_length


class CustomFieldIn(Schema):
    label: str


def custom_field_json(custom_field: CustomField) -> dict:
    return {
        "id": custom_field.id,
        "name": f"ck_field_{custom_field.id}_{custom_field.key}",
        "key": custom_field.key,
        "label": custom_field.label,
    }


def _label(raw: str) -> str:
    label = raw.strip()
    if not label:
        raise ApiError(422, ["Label can't be blank"])
    problem = one_line_text_error(label, max_length=MAX_LABEL_LENGTH)
    if problem:
        raise ApiError(422, [f"Label: {problem}"])
    return label


def key_from_label(label: str) -> str:
    """Kit's key: the label in ASCII, lower case, words joined by underscores ("Last name" ->
    "last_name"); one that would not start with a letter gets "field_" before it."""
    key = slugify(label).replace("-", "_")[:MAX_KEY_LENGTH].strip("_")
    if not key[:1].isalpha():
        key = f"field_{key}".strip("_")[:MAX_KEY_LENGTH]
    return key


@router.get("/custom_fields", openapi_extra=paged())
def custom_field_list(request):
    problems: list[str] = []
    paging = page_request(request, list_name="custom_fields", problems=problems)
    refuse_if(problems)
    items, pagination = page_of(CustomField.objects.filter(account=request.account), paging)
    return json_answer(
        {"custom_fields": [custom_field_json(row) for row in items], "pagination": pagination}
    )


@router.post("/custom_fields")
def custom_field_create(request, payload: CustomFieldIn):
    """201 with a new field; 200 with the account's field of the key this label gives."""
    label = _label(payload.label)
    key = key_from_label(label)
    if key in RESERVED_FIELD_KEYS:
        raise ApiError(422, [f"Label {label} names a built-in field"])
    try:
        custom_field = services.custom_field_create(account=request.account, key=key, label=label)
    except services.CustomFieldExists:
        existing = CustomField.objects.get(account=request.account, key=key)
        return json_answer({"custom_field": custom_field_json(existing)})
    return json_answer({"custom_field": custom_field_json(custom_field)}, 201)


@router.put("/custom_fields/{int:custom_field_id}")
def custom_field_update(request, custom_field_id: int, payload: CustomFieldIn):
    custom_field = get_for_account(request, CustomField, pk=custom_field_id)
    services.custom_field_relabel(custom_field=custom_field, label=_label(payload.label))
    return json_answer({"custom_field": custom_field_json(custom_field)})


@router.delete("/custom_fields/{int:custom_field_id}")
def custom_field_delete(request, custom_field_id: int):
    custom_field = get_for_account(request, CustomField, pk=custom_field_id)
    services.custom_field_delete(custom_field=custom_field)
    return HttpResponse(status=204)
