from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from convertkit import services
from convertkit.csv_download import csv_download, job_error_rows
from convertkit.forms import (
    AccountCreateForm,
    AccountSettingsForm,
    QueuedPasswordResetForm,
    SignupForm,
)
from convertkit.models import Job, Membership
from convertkit.tenancy import SESSION_ACCOUNT_KEY, account_required, get_for_account


@account_required
def dashboard(request):
    from subscribers import selectors
    from tracking import reports

    periods = reports.GROWTH_PERIODS
    days = next((n for n in periods if str(n) == request.GET.get("days")), periods[0])
    return render(
        request,
        "convertkit/dashboard.html",
        {
            "counts": selectors.subscriber_counts(account=request.account),
            "recent_jobs": Job.objects.filter(account=request.account).order_by("-id")[:5],
            "growth": reports.list_growth(account=request.account, days=days),
            "growth_periods": reports.GROWTH_PERIODS,
            "rates_chart": reports.recent_rates_chart(account=request.account),
        },
    )


@never_cache
def health(request):
    """For load balancers and `docker compose`: 200 when PostgreSQL and Redis answer, else 503."""
    from django.core.cache import cache

    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        cache.set("health", "1", 5)
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


def signup(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user, account = services.user_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            account_name=form.cleaned_data["account_name"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session[SESSION_ACCOUNT_KEY] = account.id
        messages.success(request, f"Welcome! {account.name} is ready.")
        return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


class PasswordResetView(auth_views.PasswordResetView):
    form_class = QueuedPasswordResetForm
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        # Links in emails use the public SITE_URL, never the Host header an attacker can forge.
        site = urlparse(settings.SITE_URL)
        form.save(
            domain_override=site.netloc,
            use_https=site.scheme == "https",
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            extra_email_context=self.extra_email_context,
        )
        return redirect(self.get_success_url())


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    pass


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    pass


@login_required
def account_create(request):
    form = AccountCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        account = services.account_create(owner=request.user, name=form.cleaned_data["name"])
        request.session[SESSION_ACCOUNT_KEY] = account.id
        messages.success(request, f"{account.name} is ready.")
        return redirect("dashboard")
    return render(request, "convertkit/account_create.html", {"form": form})


@login_required
@require_POST
def account_switch(request, account_id: int):
    if not Membership.objects.filter(user=request.user, account_id=account_id).exists():
        raise Http404
    request.session[SESSION_ACCOUNT_KEY] = account_id
    return redirect("dashboard")


@account_required
def account_settings(request):
    form = AccountSettingsForm(request.POST or None, instance=request.account)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved.")
        return redirect("account_settings")
    return render(request, "convertkit/account_settings.html", {"form": form})


@account_required
def job_detail(request, job_id: int):
    job = get_for_account(request, Job, pk=job_id)
    return render(request, "convertkit/job_detail.html", {"job": job})


@account_required
def job_progress(request, job_id: int):
    """The progress bar fragment; htmx polls it every second until the job ends."""
    job = get_for_account(request, Job, pk=job_id)
    response = render(
        request,
        "convertkit/partials/job_progress.html",
        {"job": job, "compact": request.GET.get("compact") == "1"},
    )
    if job.is_finished and request.htmx:
        # Tell the page, so it can refresh what the job changed (e.g. the subscriber list).
        response["HX-Trigger"] = "job-finished"
    return response


@account_required
def job_errors_csv(request, job_id: int):
    job = get_for_account(request, Job, pk=job_id)
    return csv_download(job_error_rows(job=job), filename=f"job-{job.id}-errors.csv")
