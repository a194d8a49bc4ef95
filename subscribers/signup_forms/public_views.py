"""The public side of forms: the hosted page, the subscribe endpoint, the view pixel, the embed
script, the confirmation link and the incentive download.

No session, cookie or CSRF token is involved anywhere here: the subscribe endpoint is posted from
creators' sites on other origins, so it is CSRF-exempt and acts only on the form named in its URL
(creating or updating an unconfirmed subscriber, or tagging an active one), never on whoever is
logged in. The confirmation and incentive links carry their own signed tokens.
"""

from __future__ import annotations

import base64
import re
from functools import cache

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from convertkit.ratelimit import LimitExceeded, client_ip, rate_limit_network, rate_limits_hit
from subscribers.models import Form, email_hash
from subscribers.signup_forms.counters import form_view_record
from subscribers.signup_forms.embed import HONEYPOT_FIELD, form_hosted_url, form_snippet_html
from subscribers.signup_forms.signup import (
    ConfirmationExpired,
    ConfirmationInvalid,
    incentive_url,
    signup_confirm,
    signup_from_confirmation_token,
    signup_from_incentive_token,
    signup_submit,
    submission_clean,
)

UID_RE = re.compile(r"[0-9a-f]{12}")
# The smallest transparent GIF (43 bytes).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
DEFAULT_SUCCESS_MESSAGE = "Thanks for subscribing!"


def _live_form(uid: str) -> Form | None:
    if not UID_RE.fullmatch(uid):
        return None
    return Form.objects.select_related("account").filter(uid=uid, archived_at=None).first()


def _wants_json(request) -> bool:
    # ck-embed.js asks for JSON; browsers posting the plain form ask for text/html first.
    return request.headers.get("Accept", "").lstrip().startswith("application/json")


def _cors(response: HttpResponse) -> HttpResponse:
    # Any site may post a form and read the answer; no credentials are ever involved.
    response["Access-Control-Allow-Origin"] = "*"
    response["Vary"] = "Accept"
    return response


def _missing(request, *, as_json: bool) -> HttpResponse:
    message = "This form no longer exists."
    if as_json:
        return _cors(JsonResponse({"ok": False, "message": message}, status=404))
    return render(request, "subscribers/signup_forms/public/form_missing.html", status=404)


def _form_page(request, form: Form, *, values=None, errors=None, status: int = 200):
    return render(
        request,
        "subscribers/signup_forms/public/form_page.html",
        {
            "form": form,
            "snippet": form_snippet_html(form, values=values, errors=errors, count_view=False),
        },
        status=status,
    )


def _success(request, form: Form, *, as_json: bool) -> HttpResponse:
    """The same answer whoever signed up, so the endpoint never tells who is on the list."""
    redirect_url = form.redirect_url if form.success_action == Form.SuccessAction.REDIRECT else ""
    message = form.success_message or DEFAULT_SUCCESS_MESSAGE
    if as_json:
        return _cors(
            JsonResponse(
                {
                    "ok": True,
                    "message": message,
                    "redirect_url": redirect_url,
                    "confirmation_required": form.double_opt_in,
                }
            )
        )
    if redirect_url:
        return HttpResponseRedirect(redirect_url, status=303)
    return render(
        request,
        "subscribers/signup_forms/public/form_success.html",
        {"form": form, "message": message},
    )


def _too_many(request, form: Form, exceeded: LimitExceeded, *, as_json: bool) -> HttpResponse:
    message = f"Too many signups from here just now. Please try again in {exceeded.wait_text}."
    if as_json:
        response = _cors(JsonResponse({"ok": False, "message": message}, status=429))
    else:
        response = _form_page(request, form, errors={"__all__": message}, status=429)
    response["Retry-After"] = str(exceeded.retry_after)
    return response


@require_GET
def hosted(request, uid: str):
    form = _live_form(uid)
    if form is None:
        return _missing(request, as_json=False)
    form_view_record(uid=form.uid)
    return _form_page(request, form)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST", "OPTIONS"])
def subscribe(request, uid: str):
    if request.method == "OPTIONS":
        response = _cors(HttpResponse(status=204))
        response["Access-Control-Allow-Methods"] = "POST"
        response["Access-Control-Allow-Headers"] = "Content-Type, Accept"
        response["Access-Control-Max-Age"] = "86400"
        return response
    as_json = _wants_json(request)
    form = _live_form(uid)
    if form is None:
        return _missing(request, as_json=as_json)
    if request.method == "GET":
        return HttpResponseRedirect(form_hosted_url(form))
    if request.POST.get(HONEYPOT_FIELD):
        # A bot filled the hidden field: store nothing, and let it believe it succeeded.
        return _success(request, form, as_json=as_json)
    ip = client_ip(request)
    exceeded = rate_limits_hit(
        [
            ("signup-ip", rate_limit_network(ip), settings.SIGNUP_LIMIT_PER_IP),
            ("signup-form", str(form.pk), settings.SIGNUP_LIMIT_PER_FORM),
        ]
    )
    if exceeded:
        return _too_many(request, form, exceeded, as_json=as_json)
    submission = submission_clean(form=form, post=request.POST)
    if submission.errors:
        if as_json:
            return _cors(
                JsonResponse(
                    {
                        "ok": False,
                        "message": "Please correct the errors below.",
                        "errors": submission.errors,
                    },
                    status=400,
                )
            )
        return _form_page(
            request, form, values=submission.values, errors=submission.errors, status=400
        )
    exceeded = rate_limits_hit(
        [
            (
                "signup-address",
                f"{form.account_id}:{email_hash(submission.email)}",
                settings.SIGNUP_LIMIT_PER_ADDRESS,
            )
        ]
    )
    if exceeded:
        return _too_many(request, form, exceeded, as_json=as_json)
    signup_submit(
        form=form,
        email=submission.email,
        data=submission.data,
        ip=ip,
        user_agent=request.headers.get("User-Agent", ""),
        page_url=request.headers.get("Referer", ""),
    )
    return _success(request, form, as_json=as_json)


@never_cache
@require_GET
def view_pixel(request, uid: str):
    if UID_RE.fullmatch(uid):
        form_view_record(uid=uid)
    return _cors(HttpResponse(PIXEL_GIF, content_type="image/gif"))


def _embed_script_source() -> bytes:
    # Read once per process in production; on every request while developing it.
    if settings.DEBUG:
        return _embed_script_read.__wrapped__()
    return _embed_script_read()


@cache
def _embed_script_read() -> bytes:
    with open(finders.find("js/ck-embed.js"), "rb") as script:
        return script.read()


@require_GET
@cache_control(public=True, max_age=3600)
def embed_script(request):
    """ck-embed.js at a URL that never changes (static file URLs carry a content hash)."""
    response = HttpResponse(_embed_script_source(), content_type="text/javascript; charset=utf-8")
    return _cors(response)


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, token: str):
    """GET shows a page that confirms by POST (at once with JavaScript, else with a button): link
    scanners fetch every URL of an email and must not confirm on the subscriber's behalf."""
    try:
        signup = signup_from_confirmation_token(token)
    except ConfirmationInvalid:
        return render(request, "subscribers/signup_forms/public/confirm_invalid.html", status=404)
    except ConfirmationExpired as expired:
        form = expired.form if expired.form and not expired.form.archived_at else None
        return render(
            request,
            "subscribers/signup_forms/public/confirm_expired.html",
            {
                "form_url": form_hosted_url(form) if form else "",
                "days": settings.CONFIRMATION_LINK_DAYS,
            },
            status=410,
        )
    if request.method == "POST":
        signup_confirm(signup=signup)
        signup.refresh_from_db()
        signup.subscriber.refresh_from_db()
    form = signup.form
    # Confirmed, and not unsubscribed since: an old link must not tell a leaver they are on the list.
    confirmed = (
        signup.outcome == signup.Outcome.CONFIRMED
        and signup.subscriber.state == signup.subscriber.State.ACTIVE
    )
    return render(
        request,
        "subscribers/signup_forms/public/confirm.html",
        {
            "signup": signup,
            "account": signup.account,
            "subscriber": signup.subscriber,
            "confirmed": confirmed,
            "incentive_url": incentive_url(signup) if confirmed and form.has_incentive else "",
        },
    )


@never_cache
@require_GET
def incentive_download(request, token: str):
    signup = signup_from_incentive_token(token)
    incentive = getattr(signup.form, "incentive_file", None) if signup else None
    if incentive is None:
        return render(request, "subscribers/signup_forms/public/incentive_missing.html", status=404)
    response = HttpResponse(bytes(incentive.data), content_type=incentive.content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=incentive.name
    )
    return response
