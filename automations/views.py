"""The creator's automation pages: the list, the builder, and a "send one email" step's email
editor.

The builder draws the flow as Kit does: the entry points side by side at the top, then the
steps top to bottom, a condition's "yes" and "no" branches side by side, a "+" between every two
steps and at the end of each branch. Each "+", step and entry point opens in place: with htmx,
every builder URL answers with the flow (partials/flow.html), which replaces the one shown, with
that place open (the choice of a step, its settings form, a step's edit form or its delete
confirmation, which say how many people stand at it); without JavaScript the same URL answers
with the whole page open at that place, and a POST redirects back to it.

The email editor is the broadcast editor's email part (broadcasts.editor: live preview,
"preview as", test send); saving an email that can go out freezes it for the pipeline.

Every object comes through get_for_account (another account's id is a 404); a step or an entry
point through its automation, so no URL pairs an automation with another one's step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from automations import selectors, services
from automations.forms import (
    ENTRY_CHOICES,
    ENTRY_HELP,
    STEP_CHOICES,
    STEP_GROUP_HELP,
    AutomationCreateForm,
    AutomationSettingsForm,
    Choices,
    SettingsForm,
    StepChoice,
    entry_form,
    entry_spec,
    step_choice,
    step_config,
    step_form,
    step_variant,
)
from automations.models import Automation, Node, Trigger
from automations.services import AutomationInvalid
from broadcasts import editor
from broadcasts.forms import EMAIL_FIELDS, EmailForm
from broadcasts.services import content_problems
from convertkit.paging import page_cursor
from convertkit.tenancy import account_required, get_for_account

Kind = Node.Kind


def _automation(request, automation_id: int) -> Automation:
    return get_for_account(request, Automation.objects.select_related("account"), pk=automation_id)


def _node(request, automation: Automation, node_id: int, **lookup) -> Node:
    """A live step of that automation, else 404."""
    return get_for_account(
        request,
        Node.objects.select_related("message"),
        pk=node_id,
        automation=automation,
        deleted_at__isnull=True,
        **lookup,
    )


def _builder_url(automation: Automation, anchor: str = "") -> str:
    return reverse("automation_detail", args=[automation.pk]) + anchor


# --- The builder ------------------------------------------------------------------------------


@dataclass
class Opened:
    """What the builder shows open: `mode` "add" (the "+" of `slot`: the choices, or `choice`'s
    settings form), "edit" or "delete" (the step `node_id`), or "entry" (the entry point
    choices, or `entry_kind`'s form)."""

    mode: str = ""
    slot: str = ""
    node_id: int | None = None
    choice: StepChoice | None = None
    entry_kind: str = ""
    form: SettingsForm | None = None
    problems: list[str] = field(default_factory=list)


def _builder(
    request,
    automation: Automation,
    *,
    opened: Opened | None = None,
    notice: str = "",
    refused: list[str] | None = None,
    settings_form: AutomationSettingsForm | None = None,
    status: int = 200,
):
    """The builder page, or (htmx) its flow alone; with something open in place, a notice of
    what was just done, or why the state or settings were not changed."""
    opened = opened or Opened()
    flow = selectors.flow_read(automation=automation)
    # A place the flow does not draw (under an exit, "yes" under a step that is no
    # condition): what was refused is said above the flow.
    astray = opened.mode == "add" and opened.slot not in flow.slot_keys
    context = {
        "automation": automation,
        "flow": flow,
        "astray": (opened.problems or ["No step can be added there."]) if astray else [],
        "opened": opened,
        "notice": notice,
        "step_groups": _step_groups(),
        "entry_choices": [(kind, label) for kind, (label, _fields) in ENTRY_CHOICES.items()],
        "entry_label": ENTRY_CHOICES[opened.entry_kind][0] if opened.entry_kind else "",
        "entry_help": ENTRY_HELP.get(opened.entry_kind, ""),
        "variants": _variants(opened),
        "problems": services.automation_problems(automation),
        "state_badge": selectors.STATE_BADGES[automation.state],
    }
    if request.htmx:
        # htmx swaps only a 2xx answer: a refused form is shown with its errors all the same.
        return render(request, "automations/partials/flow.html", context)
    context.update(
        {
            "state_help": selectors.STATE_HELP[automation.state],
            "refused": refused or [],
            "settings_form": settings_form
            or AutomationSettingsForm(initial=AutomationSettingsForm.initial_for(automation)),
        }
    )
    return render(request, "automations/automation_detail.html", context, status=status)


def _step_groups() -> list[tuple[str, str, list[StepChoice]]]:
    groups: dict[str, list[StepChoice]] = {}
    for choice in STEP_CHOICES:
        groups.setdefault(choice.group, []).append(choice)
    return [(group, STEP_GROUP_HELP[group], choices) for group, choices in groups.items()]


def _variants(opened: Opened) -> list[StepChoice]:
    """The other tests, events or modes an edited step of the same kind could have."""
    if opened.mode != "edit" or opened.choice is None:
        return []
    return [
        choice
        for choice in STEP_CHOICES
        if choice.kind == opened.choice.kind and choice.variant != opened.choice.variant
    ]


def _done(request, automation: Automation, notice: str, anchor: str = ""):
    """After a change made in place: the fresh flow saying what was done (htmx), or back to
    the page."""
    if request.htmx:
        return _builder(request, automation, notice=notice)
    messages.success(request, notice)
    return redirect(_builder_url(automation, anchor))


def _refused(request, automation: Automation, opened: Opened):
    """The builder with the form open and what stopped it; nothing was changed."""
    return _builder(
        request, automation, opened=opened, status=400 if request.method == "POST" else 200
    )


# --- List, create, settings, state, delete ----------------------------------------------------


@account_required
def automation_list(request):
    page = selectors.automation_page(
        account=request.account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(request, "automations/automation_list.html", {"page": page})


@account_required
def automation_create(request):
    form = AutomationCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        automation = services.automation_create(
            account=request.account, name=form.cleaned_data["name"]
        )
        messages.success(request, "Automation created. Add how subscribers enter, then its steps.")
        return redirect("automation_detail", automation.pk)
    return render(
        request,
        "automations/automation_create.html",
        {"form": form},
        status=400 if form.errors else 200,
    )


@account_required
def automation_detail(request, automation_id: int):
    return _builder(request, _automation(request, automation_id))


@account_required
def automation_settings(request, automation_id: int):
    automation = _automation(request, automation_id)
    if request.method != "POST":
        return redirect(_builder_url(automation, "#settings"))
    form = AutomationSettingsForm(
        request.POST, initial=AutomationSettingsForm.initial_for(automation)
    )
    if form.is_valid():
        try:
            services.automation_update(automation=automation, **form.cleaned_data)
        except AutomationInvalid as invalid:
            automation.refresh_from_db()
            return _builder(
                request,
                automation,
                refused=["Nothing was saved.", *invalid.problems],
                settings_form=form,
                status=400,
            )
        messages.success(request, "Settings saved.")
        return redirect(_builder_url(automation))
    return _builder(
        request,
        automation,
        refused=["Nothing was saved. Please correct the settings marked below."],
        settings_form=form,
        status=400,
    )


STATE_DONE = {
    Automation.State.ACTIVE: "Active: people enter and move through it.",
    Automation.State.PAUSED: "Paused: people enter and wait at the start; nobody moves.",
    Automation.State.INACTIVE: "Inactive: nobody enters and nobody moves.",
}


@account_required
def automation_state(request, automation_id: int):
    """Activates, pauses or deactivates (POST state=...); what stops it is listed."""
    automation = _automation(request, automation_id)
    if request.method != "POST":
        return redirect(_builder_url(automation))
    state = request.POST.get("state", "")
    try:
        services.automation_state_set(automation=automation, state=state)
    except AutomationInvalid as invalid:
        return _builder(
            request,
            automation,
            refused=["It cannot run yet. Fix these first:", *invalid.problems]
            if state in Automation.State.values
            else invalid.problems,
            status=400,
        )
    messages.success(request, STATE_DONE[state])
    return redirect(_builder_url(automation))


@account_required
def automation_delete(request, automation_id: int):
    automation = _automation(request, automation_id)
    if request.method == "POST":
        try:
            services.automation_delete(automation=automation)
        except AutomationInvalid as invalid:
            messages.error(request, f"Not deleted. {invalid}")
            return redirect(_builder_url(automation))
        messages.success(request, f"“{automation.name}” was deleted.")
        return redirect("automation_list")
    active = services.journey_counts(automation=automation)["active"]
    people = f"{active} {'person is' if active == 1 else 'people are'} in it now: they leave it."
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete “{automation.name}”?",
            "explanation": f"{people} Its steps and entry points are deleted; what it did stays "
            "in each subscriber's history.",
            "button": "Delete automation",
            "danger": True,
            "cancel_url": _builder_url(automation),
        },
    )


# --- Entry points -----------------------------------------------------------------------------


@account_required
def entry_add(request, automation_id: int):
    """GET: the entry point choices, or (?kind=) that kind's form; POST: adds it."""
    automation = _automation(request, automation_id)
    data = request.POST if request.method == "POST" else request.GET
    kind = data.get("kind", "")
    if kind not in ENTRY_CHOICES:
        problems = ["Choose how subscribers enter."] if kind else []
        return _refused(request, automation, Opened(mode="entry", problems=problems))
    choices = Choices(account=request.account, automation=automation)
    form = entry_form(kind, choices=choices, data=request.POST or None)
    opened = Opened(mode="entry", entry_kind=kind, form=form)
    if request.method == "POST" and form.is_valid():
        try:
            services.entry_add(automation=automation, spec=entry_spec(kind, form.cleaned_data))
        except AutomationInvalid as invalid:
            opened.problems = invalid.problems
        else:
            return _done(request, automation, "Entry point added.", "#entries")
    return _refused(request, automation, opened)


@account_required
def entry_delete(request, automation_id: int, trigger_id: int):
    automation = _automation(request, automation_id)
    trigger = get_for_account(
        request, Trigger, pk=trigger_id, automation=automation, role=Trigger.Role.ENTRY
    )
    if request.method != "POST":
        return redirect(_builder_url(automation, "#entries"))
    services.entry_delete(trigger=trigger)
    return _done(request, automation, "Entry point removed.", "#entries")


# --- Steps ------------------------------------------------------------------------------------


def _place(request, automation: Automation, data) -> tuple[Node | None, str]:
    """The place a step is added at (?parent=&branch=): under a live step of this automation
    (none: the start) on a branch; 404 for any other."""
    parent_id, branch = data.get("parent", ""), data.get("branch", "")
    if branch not in Node.Branch.values:
        raise Http404
    if not parent_id:
        return None, branch
    if not parent_id.isdigit() or len(parent_id) > 18:
        raise Http404
    return _node(request, automation, int(parent_id)), branch


@account_required
def step_add(request, automation_id: int):
    """GET ?parent=&branch=: the kinds of step for that place; with &kind=&variant=, that
    kind's settings form. POST: adds the step there (a "send one email" step opens its
    editor)."""
    automation = _automation(request, automation_id)
    data = request.POST if request.method == "POST" else request.GET
    parent, branch = _place(request, automation, data)
    slot = selectors.Slot(parent and parent.pk, branch, "")
    opened = Opened(mode="add", slot=slot.key)
    kind = data.get("kind", "")
    choice = step_choice(kind, data.get("variant", ""))
    if choice is None:
        opened.problems = ["Choose a kind of step."] if kind else []
        return _refused(request, automation, opened)
    opened.choice = choice
    opened.form = step_form(
        choice,
        choices=Choices(account=request.account, automation=automation),
        data=request.POST if request.method == "POST" else None,
    )
    if request.method == "POST" and opened.form.is_valid():
        try:
            node = services.node_add(
                automation=automation,
                parent=parent,
                branch=branch,
                kind=choice.kind,
                config=step_config(choice, opened.form.cleaned_data),
            )
        except AutomationInvalid as invalid:
            opened.problems = invalid.problems
        else:
            if node.kind == Kind.EMAIL:
                url = reverse("automation_email_edit", args=[automation.pk, node.pk])
                messages.success(request, "Step added. Write its email.")
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
            return _done(request, automation, f"Step added: {choice.title}.", f"#step-{node.pk}")
    return _refused(request, automation, opened)


@account_required
def step_edit(request, automation_id: int, node_id: int):
    """GET: the step's settings form in place (?variant= another test, event or mode of the
    same kind); POST: saves them. Whoever stands at the step stays there: a change applies to
    those who arrive after it."""
    automation = _automation(request, automation_id)
    node = _node(request, automation, node_id)
    if node.kind == Kind.EMAIL:
        return redirect("automation_email_edit", automation.pk, node.pk)
    saved_variant = step_variant(node)
    data = request.POST if request.method == "POST" else request.GET
    choice = step_choice(node.kind, data.get("variant", saved_variant)) or step_choice(
        node.kind, saved_variant
    )
    if choice is None or not choice.fields:
        return redirect(_builder_url(automation, f"#step-{node.pk}"))
    form = step_form(
        choice,
        choices=Choices(account=request.account, automation=automation),
        data=request.POST if request.method == "POST" else None,
        config=node.config if choice.variant == saved_variant else None,
    )
    opened = Opened(mode="edit", node_id=node.pk, choice=choice, form=form)
    if request.method == "POST" and form.is_valid():
        try:
            services.node_update(node=node, config=step_config(choice, form.cleaned_data))
        except AutomationInvalid as invalid:
            opened.problems = invalid.problems
        else:
            return _done(request, automation, "Step saved.", f"#step-{node.pk}")
    return _refused(request, automation, opened)


@account_required
def step_delete(request, automation_id: int, node_id: int):
    """GET: the confirmation in place, with how many stand at the step and where they go;
    POST: deletes it and moves them there."""
    automation = _automation(request, automation_id)
    node = _node(request, automation, node_id)
    opened = Opened(mode="delete", node_id=node.pk)
    if request.method == "POST":
        try:
            moved = services.node_delete(node=node)
        except AutomationInvalid as invalid:
            opened.problems = invalid.problems
        else:
            notice = "Step deleted."
            if moved:
                notice += f" {moved} {'person' if moved == 1 else 'people'} moved on from it."
            return _done(request, automation, notice, "#steps")
    return _refused(request, automation, opened)


# --- A "send one email" step's email ----------------------------------------------------------


def _email_step(request, automation_id: int, node_id: int) -> tuple[Automation, Node]:
    automation = _automation(request, automation_id)
    node = _node(request, automation, node_id, kind=Kind.EMAIL, message__isnull=False)
    node.message.account = automation.account
    return automation, node


def _email_form(node: Node, data=None) -> EmailForm:
    message = node.message
    return EmailForm(
        data,
        account=message.account,
        initial={name: getattr(message, name) for name in EMAIL_FIELDS},
    )


def _render_email(
    request,
    automation: Automation,
    node: Node,
    form: EmailForm,
    *,
    refused: list[str] | None = None,
    previewing: bool = False,
):
    message = node.message
    context = {
        "automation": automation,
        "node": node,
        "form": form,
        "ready": bool(message.frozen_html),
        "people": services.node_counts(automation=automation).get(node.pk, 0),
        "saved_problems": content_problems(message=message),
        "refused": refused or [],
        "previewing": previewing,
        "suggested_emails": editor.suggested_emails(request.account),
        **editor.preview_context(request, form, message),
    }
    failed = (form.errors or refused) and not previewing
    return render(request, "automations/email_edit.html", context, status=400 if failed else 200)


def _email_save(request, node: Node) -> tuple[EmailForm, list[str]]:
    """Saves the editor's posted values: the form, and why nothing was saved ([] when
    saved)."""
    form = _email_form(node, request.POST)
    if not form.is_valid():
        return form, ["Nothing was saved. Please correct the parts marked below."]
    try:
        services.node_email_update(
            node=node, **{name: form.cleaned_data[name] for name in EMAIL_FIELDS}
        )
    except AutomationInvalid as invalid:
        node.message.refresh_from_db()
        return form, [
            "Nothing was saved: this email is ready and people may be getting it, so it must "
            "stay ready to send. Fix these first:",
            *invalid.problems,
        ]
    return form, []


@account_required
def email_edit(request, automation_id: int, node_id: int):
    automation, node = _email_step(request, automation_id, node_id)
    if request.method == "POST":
        form, refused = _email_save(request, node)
        if refused:
            return _render_email(request, automation, node, form, refused=refused)
        if node.message.frozen_html:
            messages.success(request, "Saved. It is ready: the next copy sent is this one.")
        else:
            messages.warning(
                request, "Saved as a draft. It cannot go out until the problems below are fixed."
            )
        return redirect("automation_email_edit", automation.pk, node.pk)
    return _render_email(request, automation, node, _email_form(node))


@account_required
def email_preview(request, automation_id: int, node_id: int):
    """The live preview of the editor's unsaved values; never saves."""
    automation, node = _email_step(request, automation_id, node_id)
    if request.method != "POST":
        return redirect("automation_email_edit", automation.pk, node.pk)
    form = _email_form(node, request.POST)
    if not request.htmx:
        return _render_email(request, automation, node, form, previewing=True)
    return render(
        request,
        "broadcasts/partials/preview.html",
        editor.preview_context(request, form, node.message),
    )


@account_required
def email_test(request, automation_id: int, node_id: int):
    """Saves the editor's values, then sends a test copy to the creator's own address."""
    automation, node = _email_step(request, automation_id, node_id)
    if request.method != "POST":
        return redirect("automation_email_edit", automation.pk, node.pk)
    form, refused = _email_save(request, node)
    test_refused = "" if refused else editor.test_send(request, node.message)
    if refused or test_refused:
        return _render_email(request, automation, node, form, refused=refused or [test_refused])
    return redirect("automation_email_edit", automation.pk, node.pk)
