from __future__ import annotations

from celery import shared_task


@shared_task(name="api.oauth_tokens_clear", queue="default", ignore_result=True)
def oauth_tokens_clear() -> None:
    """Deletes what OAuth left behind (django-oauth-toolkit's clear_expired, as its `cleartokens`
    command): expired codes, refresh tokens expired past OAUTH_REFRESH_TOKEN_SECONDS or revoked,
    and expired access tokens with no refresh token. Their account links go with them."""
    from oauth2_provider.models import clear_expired

    clear_expired()


# Never retried: an error marks the Job failed. acks_late (settings) brings a job whose worker
# was killed back to the next one, and bulk_job_run is safe to run again.
@shared_task(name="api.run_bulk_request", queue="default", ignore_result=True)
def run_bulk_request(job_id: int) -> None:
    """Applies a bulk API request's batches, then posts the result to its callback_url."""
    from api.bulk_jobs import bulk_job_run

    bulk_job_run(job_id=job_id)
