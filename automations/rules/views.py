"""The creator's rule pages: the list, create and edit (rows of triggers and actions added and
removed in place), a rule's page in words, enable/disable, delete and its history.

Every rule comes through get_for_account: another account's id is a 404 and changes nothing."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse

from automations import services
from automations.models import Rule
from automations.rules import selectors
from automations.rules.forms import RuleEditor
from convertkit.paging import page_cursor
from convertkit.tenancy import account_required, get_for_account


def _rule(request, rule_id: int) -> Rule:
    return get_for_account(request, Rule, pk=rule_id)


def _rule_with_triggers(request, rule_id: int) -> Rule:
    return selectors.rule_with_triggers(_rule(request, rule_id))


@account_required
def rule_list(request):
    page = selectors.rule_page(
        account=request.account,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(request, "automations/rules/rule_list.html", {"page": page})


def _render_editor(request, editor: RuleEditor, rule: Rule | None, *, problems=(), status=200):
    context = {"editor": editor, "rule": rule, "problems": problems}
    return render(request, "automations/rules/rule_form.html", context, status=status)


def _editor_post(request, rule: Rule | None):
    """A posted editor: its rows rearranged (nothing saved; htmx gets the rows only), or the
    rule saved and its page shown; what stops the save is shown on the editor, nothing saved."""
    pickers = selectors.rule_pickers(account=request.account, rule=rule)
    editor = RuleEditor.rearranged(request.POST, pickers=pickers)
    if editor is not None and request.htmx:
        return render(
            request, "automations/rules/partials/rule_rows.html", {"editor": editor, "rule": rule}
        )
    if editor is not None:
        return _render_editor(request, editor, rule)
    editor = RuleEditor(pickers=pickers, data=request.POST)
    problems = []
    if editor.is_valid():
        try:
            saved = services.rule_save(account=request.account, rule=rule, **editor.values())
        except services.AutomationInvalid as invalid:
            problems = invalid.problems
        else:
            messages.success(request, f"Rule “{saved.name}” saved.")
            return redirect("rule_detail", saved.id)
    return _render_editor(request, editor, rule, problems=problems, status=400)


@account_required
def rule_create(request):
    if request.method == "POST":
        return _editor_post(request, None)
    pickers = selectors.rule_pickers(account=request.account)
    return _render_editor(request, RuleEditor(pickers=pickers), None)


@account_required
def rule_edit(request, rule_id: int):
    rule = _rule_with_triggers(request, rule_id)
    if request.method == "POST":
        return _editor_post(request, rule)
    pickers = selectors.rule_pickers(account=request.account, rule=rule)
    return _render_editor(request, RuleEditor.of_rule(rule, pickers=pickers), rule)


@account_required
def rule_detail(request, rule_id: int):
    rule = _rule_with_triggers(request, rule_id)
    names = selectors.rule_names(account=request.account, rules=[rule])
    return render(
        request,
        "automations/rules/rule_detail.html",
        {
            "rule": rule,
            "words": selectors.words_of(rule, names),
            "last_fired": selectors.last_fired(rule=rule),
        },
    )


@account_required
def rule_toggle(request, rule_id: int):
    """POST enabled=1 enables the rule, enabled=0 disables it (a value, not a flip: a second
    click changes nothing)."""
    rule = _rule(request, rule_id)
    if request.method == "POST" and request.POST.get("enabled") in ("0", "1"):
        enabled = request.POST["enabled"] == "1"
        services.rule_enable(rule=rule, enabled=enabled)
        if enabled:
            messages.success(
                request, f"“{rule.name}” is enabled: it acts on what happens from now on."
            )
        else:
            messages.success(
                request, f"“{rule.name}” is disabled: it does nothing until you enable it."
            )
    return redirect("rule_detail", rule.id)


@account_required
def rule_delete(request, rule_id: int):
    rule = _rule(request, rule_id)
    if request.method == "POST":
        services.rule_delete(rule=rule)
        messages.success(request, f"Rule “{rule.name}” deleted.")
        return redirect("rule_list")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete the rule “{rule.name}”?",
            "explanation": "It stops acting at once. What it already did stays done: tags it "
            "added stay, and so do subscriptions to sequences.",
            "button": "Delete rule",
            "danger": True,
            "cancel_url": reverse("rule_detail", args=[rule.id]),
        },
    )


@account_required
def rule_history(request, rule_id: int):
    rule = _rule(request, rule_id)
    page = selectors.history_page(
        rule=rule, after=page_cursor(request, "after"), before=page_cursor(request, "before")
    )
    return render(request, "automations/rules/rule_history.html", {"rule": rule, "page": page})
