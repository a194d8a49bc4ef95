"""The creator's snippet pages: the list, create, edit, delete, and the library the visual
editor's snippet menu reads. Every snippet comes through get_for_account: another account's id
is a 404 and changes nothing."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from content.models import Snippet
from content.snippets import services
from content.snippets.forms import SnippetForm
from convertkit.tenancy import account_required, get_for_account


@account_required
def snippet_list(request):
    snippets = Snippet.objects.filter(account=request.account).order_by("name", "id")
    return render(request, "content/snippets/snippet_list.html", {"snippets": snippets})


def _editor(request, snippet: Snippet | None):
    """The editor, shown or posted: a valid post is saved and leads back to the list; what
    stops the save is shown, nothing saved."""
    initial = {"name": snippet.name, "body": snippet.body} if snippet else None
    form = SnippetForm(request.POST or None, initial=initial)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        try:
            if snippet is None:
                saved = services.snippet_create(account=request.account, **values)
            else:
                saved = services.snippet_update(snippet=snippet, **values)
        except services.SnippetInvalid as invalid:
            problems = invalid.problems
        else:
            messages.success(
                request, f"Snippet “{saved.name}” saved: {{{{ snippet.{saved.key} }}}}."
            )
            return redirect("snippet_list")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "snippet": snippet, "problems": problems}
    return render(request, "content/snippets/snippet_form.html", context, status=status)


@account_required
def snippet_create(request):
    return _editor(request, None)


@account_required
def snippet_edit(request, snippet_id: int):
    return _editor(request, get_for_account(request, Snippet, pk=snippet_id))


@account_required
def snippet_delete(request, snippet_id: int):
    snippet = get_for_account(request, Snippet, pk=snippet_id)
    if request.method == "POST":
        services.snippet_delete(snippet=snippet)
        messages.success(request, f"Snippet “{snippet.name}” deleted.")
        return redirect("snippet_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete the snippet “{snippet.name}”?",
            "explanation": f"Emails that use {{{{ snippet.{snippet.key} }}}} show nothing in its "
            "place, and those not yet sent list it among their problems.",
            "button": "Delete snippet",
            "danger": True,
            "cancel_url": reverse("snippet_edit", args=[snippet.id]),
        },
    )


@account_required
@require_GET
def snippet_library(request):
    """{"snippets": [{"key", "name", "body"}]}: the account's snippets by name, each body the
    document itself (an object, as saved), for the visual editor's snippet menu."""
    rows = (
        Snippet.objects.filter(account=request.account)
        .order_by("name", "id")
        .values_list("key", "name", "body")
    )
    snippets = [{"key": key, "name": name, "body": json.loads(body)} for key, name, body in rows]
    return JsonResponse({"snippets": snippets})
