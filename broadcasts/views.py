from __future__ import annotations

from django.shortcuts import render

from convertkit.tenancy import account_required


@account_required
def broadcast_list(request):
    return render(request, "broadcasts/broadcast_list.html")
