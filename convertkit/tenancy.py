"""How a request finds its account, and the one helper every view uses to look objects up.

Every object a creator owns carries `account`; every lookup from a request goes through
`get_for_account`, so an id from another account is a 404, never a 403 and never a leak.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect

from convertkit.models import Account, Membership

SESSION_ACCOUNT_KEY = "account_id"


def creator_accounts(request) -> tuple[Account | None, list[Account]]:
    """The account chosen in the session (else the first joined) and the creator's other
    accounts by name, for the account menu: both from one query."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None, []
    accounts = [
        membership.account
        for membership in Membership.objects.filter(user=user)
        .select_related("account")
        .order_by("id")
    ]
    if not accounts:
        return None, []
    wanted = request.session.get(SESSION_ACCOUNT_KEY)
    current = next((account for account in accounts if account.id == wanted), accounts[0])
    others = sorted(
        (account for account in accounts if account.id != current.id), key=lambda a: a.name
    )
    return current, others


def account_required(view):
    """Login required, and the creator must belong to an account (else: create one)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.account:
            return redirect("account_create")
        return view(request, *args, **kwargs)

    return wrapper


def get_for_account(request, model, **lookup):
    """The object of `model` matching `lookup` in the request's account, or 404."""
    if not request.account:
        raise Http404
    return get_object_or_404(model, account=request.account, **lookup)


def ids_not_owned(model, *, account_id: int, ids, kept=()) -> tuple[list[int], list[int]]:
    """`ids` (sorted, once each) and those of them that name no `model` row of the account
    and are not among `kept` (ids a saved object already holds): what a service refuses when
    a form or an API names another account's tag, segment or sequence. ValueError or
    TypeError for what is not an id."""
    wanted = sorted({int(pk) for pk in ids})
    unknown = set(wanted) - {int(pk) for pk in kept}
    if unknown:
        unknown -= set(
            model.objects.filter(account_id=account_id, pk__in=unknown).values_list("pk", flat=True)
        )
    return wanted, sorted(unknown)
