"""gunicorn settings of the web process: `gunicorn -c python:convertkit.gunicorn_conf
convertkit.wsgi:application` (make run, docker compose, the Dockerfile). Everything else (bind,
workers, logs) stays on the command line or in GUNICORN_CMD_ARGS / WEB_CONCURRENCY."""

from __future__ import annotations


def worker_exit(server, worker) -> None:
    """A worker leaving gracefully (SIGTERM, SIGINT, SIGQUIT, max_requests) hands its buffered
    tracking events over before it ends, while its logging and connections still work. An
    atexit hook does the same for processes not run by gunicorn."""
    from tracking.buffer import buffer_flush

    buffer_flush()
