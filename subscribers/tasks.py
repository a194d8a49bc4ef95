from __future__ import annotations

from celery import shared_task


@shared_task(name="subscribers.run_import", ignore_result=True, max_retries=3)
def run_import(job_id: int) -> None:
    """Imports the CSV of an import Job (safe to run again: the merge is an upsert)."""
    from subscribers import importer

    importer.import_job_run(job_id=job_id)


@shared_task(name="subscribers.run_bulk_action", ignore_result=True, max_retries=3)
def run_bulk_action(job_id: int) -> None:
    """Applies a bulk action Job (tag, untag, unsubscribe, delete) to its filtered set, in batches."""
    from subscribers import bulk

    bulk.bulk_job_run(job_id=job_id)
