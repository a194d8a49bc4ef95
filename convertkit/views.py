from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from broadcasts.public.links import archive_url
from broadcasts.public.selectors import archived_broadcasts
from convertkit import services
from convertkit.csv_download import csv_download, job_error_rows
from convertkit.forms import (
    AccountArchiveForm,
    AccountCreateForm,
    AccountSettingsForm,
    LoginForm,
    QueuedPasswordResetForm,
    SignupFinishForm,
    SignupForm,
)
from convertkit.models import Job, Membership
from convertkit.ratelimit import LimitExceeded, address_and_network_hit
from convertkit.signup import (
    LINK_MAX_AGE,
    SignupLinkInvalid,
    SignupLinkUsed,
    signup_complete,
    signup_email_from_token,
    signup_email_send,
)
from convertkit.tenancy import SESSION_ACCOUNT_KEY, account_required, get_for_account
from subscribers import selectors
from subscribers.models import Form
from tracking import reports

# Problems of a finished job listed on its page; the CSV download has all the stored ones.
JOB_PROBLEMS_SHOWN = 100


@account_required
def dashboard(request):
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


def _limited(response, exceeded: LimitExceeded):
    """A form page refused by a rate limit: 429 with Retry-After, the form saying how long."""
    response.status_code = 429
    response["Retry-After"] = str(exceeded.retry_after)
    return response


def _account_mail_limits_hit(request, email: str) -> LimitExceeded | None:
    return address_and_network_hit(
        request,
        scope="account-mail",
        email=email,
        per_address=settings.ACCOUNT_MAIL_LIMIT_PER_ADDRESS,
        per_ip=settings.ACCOUNT_MAIL_LIMIT_PER_IP,
    )


def _too_many_emails(form, exceeded: LimitExceeded) -> None:
    form.add_error(
        None,
        "Too many emails asked for this address or from your network. Try again in "
        f"{exceeded.wait_text}.",
    )


def signup(request):
    """Step one: the address. Any address gets the same answer and one email
    (convertkit.signup), so the page never tells whether an address has a login."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        exceeded = _account_mail_limits_hit(request, email)
        if exceeded is None:
            signup_email_send(email=email)
            return redirect("signup_sent")
        _too_many_emails(form, exceeded)
        return _limited(render(request, "registration/signup.html", {"form": form}), exceeded)
    return render(request, "registration/signup.html", {"form": form})


def signup_sent(request):
    # Under DEBUG the email is in the development mail sink, whose mailbox page needs a login.
    mailbox_dir = settings.MAILBOX_DIR if settings.DEBUG else None
    return render(
        request,
        "registration/signup_sent.html",
        {"days": LINK_MAX_AGE.days, "mailbox_dir": mailbox_dir},
    )


@never_cache
def signup_finish(request, token: str):
    """Step two, from the link in the email: the password and the account's name."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    try:
        email = signup_email_from_token(token)
        form = SignupFinishForm(request.POST or None, email=email)
        if request.method == "POST" and form.is_valid():
            user, account = signup_complete(
                email=email,
                password=form.cleaned_data["password"],
                account_name=form.cleaned_data["account_name"],
            )
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_ACCOUNT_KEY] = account.id
            messages.success(request, f"Welcome! {account.name} is ready.")
            return redirect("dashboard")
    except SignupLinkInvalid as invalid:
        return render(
            request,
            "registration/signup_link_invalid.html",
            {"expired": invalid.expired, "days": LINK_MAX_AGE.days},
            status=410 if invalid.expired else 404,
        )
    except SignupLinkUsed:
        messages.info(request, "This address has a login already: log in with it.")
        return redirect("login")
    return render(request, "registration/signup_finish.html", {"form": form, "email": email})


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        return _limited(response, form.limit_exceeded) if form.limit_exceeded else response


class LogoutView(auth_views.LogoutView):
    pass


class PasswordResetView(auth_views.PasswordResetView):
    """Answers the same for any address (Django's form mails only an address with a login);
    limited like the sign-up email, since both send mail to an address anyone can type."""

    form_class = QueuedPasswordResetForm
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        exceeded = _account_mail_limits_hit(self.request, form.cleaned_data["email"])
        if exceeded:
            _too_many_emails(form, exceeded)
            return _limited(self.form_invalid(form), exceeded)
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
def account_archive_settings(request):
    """The public archive's settings: its address (given from the account's name the first
    time), its signup form, and a link to it."""
    account = request.account
    live_forms = list(
        Form.objects.filter(account=account, archived_at=None)
        .order_by("name")
        .values_list("id", "name")
    )
    initial = {
        "public_slug": account.public_slug or services.public_slug_suggest(account.name),
        "archive_form_id": account.archive_form_id,
    }
    form = AccountArchiveForm(
        request.POST or None, account=account, forms=live_forms, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.account_archive_update(account=account, **form.cleaned_data)
        except services.ArchiveSettingsRefused as refused:
            form.add_error(None, str(refused))
        else:
            messages.success(request, "Archive settings saved.")
            return redirect("account_archive_settings")
    return render(
        request,
        "convertkit/account_archive_settings.html",
        {
            "form": form,
            "archive_url": archive_url(account) if account.public_slug else "",
            "published": account.public_slug is not None and archived_broadcasts(account).exists(),
        },
        status=400 if form.errors else 200,
    )


@account_required
def account_settings(request):
    form = AccountSettingsForm(request.POST or None, instance=request.account)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved.")
        return redirect("account_settings")
    return render(request, "convertkit/account_settings.html", {"form": form})


def _job_context(job: Job, *, compact: bool = False) -> dict:
    """What the job's progress fragment shows; once the job ended, its first problems by line
    (through the (job, line) index: never all of them, never counted, which error_count is)."""
    problems = []
    if job.is_finished and job.error_count and not compact:
        problems = list(
            job.errors.order_by("line", "id").values("line", "column_name", "message")[
                :JOB_PROBLEMS_SHOWN
            ]
        )
    return {"job": job, "compact": compact, "problems": problems}


@account_required
def job_detail(request, job_id: int):
    job = get_for_account(request, Job, pk=job_id)
    return render(request, "convertkit/job_detail.html", _job_context(job))


@account_required
def job_progress(request, job_id: int):
    """The progress bar fragment; htmx polls it every second until the job ends."""
    job = get_for_account(request, Job, pk=job_id)
    response = render(
        request,
        "convertkit/partials/job_progress.html",
        _job_context(job, compact=request.GET.get("compact") == "1"),
    )
    if job.is_finished and request.htmx:
        # Tell the page, so it can refresh what the job changed (e.g. the subscriber list).
        response["HX-Trigger"] = "job-finished"
    return response


@account_required
def job_errors_csv(request, job_id: int):
    job = get_for_account(request, Job, pk=job_id)
    return csv_download(job_error_rows(job=job), filename=f"job-{job.id}-errors.csv")
