"""The public unsubscribe page at /u/<token>/, reached from the link or header of an email.

No session, cookie or CSRF token is involved: the signed token alone names the subscriber, and
mail clients sending the RFC 8058 one-click POST have none of those. GET never changes anything,
because link scanners fetch every URL of an email. The link of a test message (a test token)
changes nothing at all and says so.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from subscribers.services import subscriber_resubscribe
from subscribers.unsubscribe import (
    LINK_REASON,
    ONE_CLICK_REASON,
    RESUBSCRIBE_REASON,
    account_from_test_token,
    subscriber_from_token,
)
from tracking.services import unsubscribe_record


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    tested = account_from_test_token(token)
    if tested is not None:
        # Whatever the method (a one-click POST included): a test changes nothing.
        return render(request, "subscribers/unsubscribe_test.html", {"account": tested})
    subscriber = subscriber_from_token(token)
    if subscriber is None:
        return render(request, "subscribers/unsubscribe_invalid.html", status=404)
    if request.method == "POST":
        if request.POST.get("List-Unsubscribe") == "One-Click":
            # RFC 8058: the mail client shows nothing of the answer; 200, never a redirect.
            unsubscribe_record(subscriber=subscriber, reason=ONE_CLICK_REASON)
            return HttpResponse("You are unsubscribed.\n", content_type="text/plain")
        if request.POST.get("action") == "resubscribe":
            subscriber_resubscribe(subscriber=subscriber, reason=RESUBSCRIBE_REASON)
        else:
            unsubscribe_record(subscriber=subscriber, reason=LINK_REASON)
    return render(
        request,
        "subscribers/unsubscribe.html",
        {
            "subscriber": subscriber,
            "account": subscriber.account,
            "posted": request.method == "POST",
        },
    )
