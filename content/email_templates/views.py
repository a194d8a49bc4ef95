"""The email template pages: the list (built-ins and the account's own, each with a small
preview), a new template, its editor with a live preview of a sample email, the default for
new emails, and delete. Every template is looked up through get_for_account."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from content.email_templates import services
from content.email_templates.builtins import BUILTINS
from content.email_templates.designs import design_for
from content.email_templates.forms import (
    EmailTemplateCreateForm,
    EmailTemplateDesignForm,
    EmailTemplateHtmlForm,
)
from content.email_templates.samples import sample_email_html
from content.models import EmailTemplate
from convertkit.tenancy import account_required, get_for_account


def _template(request, template_id: int) -> EmailTemplate:
    return get_for_account(request, EmailTemplate, pk=template_id)


@account_required
def email_template_list(request):
    account = request.account
    default = account.default_email_template
    rows = [
        {"key": key, "name": builtin.name, "description": builtin.description, "builtin": True}
        for key, builtin in BUILTINS.items()
    ]
    rows += [
        {"key": template.key, "name": template.name, "template": template, "builtin": False}
        for template in EmailTemplate.objects.filter(account=account).order_by("name", "id")
    ]
    for row in rows:
        row["is_default"] = row["key"] == default
        row["sample"] = sample_email_html(
            account=account, design=design_for(account=account, key=row["key"])
        )
    return render(
        request,
        "content/email_templates/template_list.html",
        {"rows": rows, "create_form": EmailTemplateCreateForm()},
    )


@account_required
def email_template_create(request):
    form = EmailTemplateCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        template = services.email_template_create(
            account=request.account,
            name=form.cleaned_data["name"],
            start=form.cleaned_data["start"],
        )
        return redirect("email_template_edit", template.id)
    status = 400 if form.errors else 200
    return render(
        request, "content/email_templates/template_create.html", {"form": form}, status=status
    )


def _edit_form(template: EmailTemplate, data=None):
    form_class = (
        EmailTemplateHtmlForm
        if template.mode == EmailTemplate.Mode.HTML
        else EmailTemplateDesignForm
    )
    return form_class(data, template=template)


def _render_edit(request, template: EmailTemplate, form, *, status: int = 200):
    return render(
        request,
        "content/email_templates/template_edit.html",
        {
            "template": template,
            "form": form,
            "is_default": request.account.default_email_template == template.key,
            "sample": sample_email_html(account=request.account, design=form.design()),
        },
        status=status,
    )


@account_required
def email_template_edit(request, template_id: int):
    template = _template(request, template_id)
    if request.method != "POST":
        return _render_edit(request, template, _edit_form(template))
    form = _edit_form(template, request.POST)
    if not form.is_valid():
        return _render_edit(request, template, form, status=400)
    if template.mode == EmailTemplate.Mode.HTML:
        services.email_template_update(
            template=template, name=form.cleaned_data["name"], html=form.cleaned_data["html"]
        )
    else:
        services.email_template_update(
            template=template, name=form.cleaned_data["name"], settings=form.settings()
        )
    messages.success(request, "Saved. Emails already sent keep the design they were sent with.")
    return redirect("email_template_edit", template.id)


@account_required
@require_POST
def email_template_preview(request, template_id: int):
    """The live preview of the editor's unsaved values; never saves."""
    template = _template(request, template_id)
    form = _edit_form(template, request.POST)
    return render(
        request,
        "content/email_templates/partials/preview.html",
        {"sample": sample_email_html(account=request.account, design=form.design())},
    )


@account_required
@require_POST
def email_template_default(request):
    """Makes a built-in (by key) or one of the account's templates the default for new emails."""
    key = request.POST.get("key", "")
    try:
        services.email_template_default_set(account=request.account, key=key)
    except ValueError:
        messages.error(request, "Choose one of your templates.")
        return redirect("email_template_list")
    messages.success(request, "New emails will start with this template.")
    return redirect("email_template_list")


@account_required
@require_POST
def email_template_delete(request, template_id: int):
    template = _template(request, template_id)
    try:
        services.email_template_delete(template=template)
    except services.EmailTemplateInUse as in_use:
        messages.error(request, str(in_use))
        return redirect("email_template_list")
    messages.success(request, f"Deleted “{template.name}”.")
    return redirect("email_template_list")
