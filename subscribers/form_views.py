from __future__ import annotations

from django.shortcuts import render

from convertkit.tenancy import account_required


@account_required
def form_list(request):
    return render(request, "subscribers/form_list.html")
