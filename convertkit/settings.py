"""Settings for every environment; production differs from development only by environment variables.

docs/operations.md lists every variable. Development defaults apply when DEBUG is true; with DEBUG
false, the variables a production deployment cannot do without (SECRET_KEY, ALLOWED_HOSTS, SITE_URL)
are required.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from convertkit.env import (
    anymail_setting,
    env_bool,
    env_fraction,
    env_int,
    env_list,
    env_prefixed,
    env_rate,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is False")
    SECRET_KEY = "insecure-development-key-" + "x" * 40

SITE_URL = (env_str("SITE_URL") or ("http://localhost:8000" if DEBUG else "")).rstrip("/")
if not SITE_URL:
    raise ImproperlyConfigured(
        "SITE_URL is required when DEBUG is False (e.g. https://mail.example.com)"
    )
_site = urlparse(SITE_URL)
if _site.scheme not in ("http", "https") or not _site.hostname:
    raise ImproperlyConfigured(f"Unexpected value SITE_URL={SITE_URL}, use https://host[:port]")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
if _site.hostname not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_site.hostname)
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}"]

INSTALLED_APPS = [
    "convertkit",
    "subscribers",
    "broadcasts",
    "tracking",
    "sequences",
    "automations",
    "content",
    "api",
    "webhooks",
    "oauth2_provider",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django.forms",
    "django_htmx",
    "anymail",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "convertkit.middleware.CurrentAccountMiddleware",
]

ROOT_URLCONF = "convertkit.urls"
WSGI_APPLICATION = "convertkit.wsgi.application"
FORM_RENDERER = "convertkit.form_rendering.FormRenderer"
AUTH_USER_MODEL = "convertkit.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "convertkit.context_processors.navigation",
            ],
        },
    },
]

# --- PostgreSQL -----------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/convertkit"
try:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"Unexpected value DATABASE_URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL: PostgreSQL is required")
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = "convertkit"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and cache ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL") or "redis://127.0.0.1:6379/0"
if urlparse(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
    raise ImproperlyConfigured(f"Unexpected value REDIS_URL={REDIS_URL}, use redis://host:port/db")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "ck",
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Celery: queues fanout, send, tracking, default; configured so that work is never lost --------
# acks_late + reject_on_worker_lost: a task is acknowledged only after it ran, so a worker killed
# mid-task leaves it on the queue for another worker (every task is safe to run twice).
# The visibility timeout is longer than any countdown we schedule, so Redis never hands a task that
# is merely waiting to a second worker. JSON only, results ignored, prefetch one. Each task names
# its queue on its decorator (no routing table).
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600, minimum=60),
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
}
CELERY_QUEUE_NAMES = ("fanout", "send", "tracking", "default")
CELERY_TASK_QUEUES = [Queue(name) for name in CELERY_QUEUE_NAMES]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # Form view counts wait in Redis (one HINCRBY per view) and reach the database once a minute.
    "flush-form-views": {"task": "subscribers.flush_form_views", "schedule": 60.0},
    # Scheduled broadcasts whose time has come; repairs after lost send tasks (broadcasts.pipeline).
    "start-scheduled-broadcasts": {"task": "broadcasts.start_scheduled", "schedule": 60.0},
    "sweep-broadcasts": {"task": "broadcasts.sweep", "schedule": 10.0},
    # Sequence emails whose time has come: claimed in batches, handed to the send queue.
    "advance-sequences": {"task": "sequences.advance", "schedule": 5.0},
    # Rules and automations: the event outbox consumed; the journeys whose step is due moved on
    # (two tasks, so that two workers run them side by side).
    "consume-automation-events": {"task": "automations.consume", "schedule": 1.0},
    "advance-automations": {"task": "automations.advance", "schedule": 1.0},
    # Date entry points ("date occurs"): whose date comes round this hour.
    "automation-dates": {"task": "automations.dates", "schedule": 300.0},
    # Opens and clicks wait in Redis for at most about a second; each drain runs until the queue
    # is empty (or its time budget ends) and takes back claims of drains that died.
    "drain-tracking-events": {"task": "tracking.drain", "schedule": 1.0},
    # Monthly partitions of tracking_event, created months ahead.
    "ensure-event-partitions": {"task": "tracking.partitions_ensure", "schedule": 6 * 3600.0},
    # Markers of drained batches, kept a day (tracking.drain.drained_batches_prune).
    "prune-drained-batches": {"task": "tracking.drained_batches_prune", "schedule": 3600.0},
    # Expired and revoked OAuth codes and tokens (api.tasks.oauth_tokens_clear).
    "clear-oauth-tokens": {"task": "api.oauth_tokens_clear", "schedule": 3600.0},
    # Due webhook deliveries (queueing kicks it at once; this catches lost kicks and retries).
    "deliver-webhooks": {"task": "webhooks.deliver", "schedule": 2.0},
    # Delivery history is kept 30 days.
    "prune-webhook-deliveries": {"task": "webhooks.prune", "schedule": 3600.0},
}

# --- Email: every message goes through Django's mail API; anymail backends for ESPs --------------
# Operators set EMAIL_* variables; Django 6.1+ reads them as the "default" entry of MAILERS, older
# Django (5.2 on Python 3.11) as the classic EMAIL_* settings.
_email_backend = env_str("EMAIL_BACKEND") or "django.core.mail.backends.smtp.EmailBackend"
_email_use_tls = env_bool("EMAIL_USE_TLS", False)
_email_use_ssl = env_bool("EMAIL_USE_SSL", False)
if _email_use_tls and _email_use_ssl:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive; set only one")
_smtp_options = {
    "host": env_str("EMAIL_HOST") or "127.0.0.1",
    "port": env_int("EMAIL_PORT", 1025, minimum=1),
    "username": env_str("EMAIL_HOST_USER") or "",
    "password": env_str("EMAIL_HOST_PASSWORD") or "",
    "use_tls": _email_use_tls,
    "use_ssl": _email_use_ssl,
    "timeout": env_int("EMAIL_TIMEOUT", 30, minimum=1),
}
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": _email_backend,
            "OPTIONS": _smtp_options if _email_backend.endswith("smtp.EmailBackend") else {},
        }
    }
else:
    EMAIL_BACKEND = _email_backend
    EMAIL_HOST = _smtp_options["host"]
    EMAIL_PORT = _smtp_options["port"]
    EMAIL_HOST_USER = _smtp_options["username"]
    EMAIL_HOST_PASSWORD = _smtp_options["password"]
    EMAIL_USE_TLS = _email_use_tls
    EMAIL_USE_SSL = _email_use_ssl
    EMAIL_TIMEOUT = _smtp_options["timeout"]
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or f"ConvertKit <noreply@{_site.hostname}>"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The mailto: of every List-Unsubscribe header; each message puts the subscriber's token after a
# "+" in its local part (unsubscribe+TOKEN@host).
UNSUBSCRIBE_MAILTO = env_str("UNSUBSCRIBE_MAILTO") or f"unsubscribe@{_site.hostname}"
_mailto_local, _, _mailto_domain = UNSUBSCRIBE_MAILTO.rpartition("@")
if not _mailto_local or not _mailto_domain or any(c in UNSUBSCRIBE_MAILTO for c in " <>,+\r\n"):
    raise ImproperlyConfigured(
        f"Unexpected value UNSUBSCRIBE_MAILTO={UNSUBSCRIBE_MAILTO!r}, use a plain address such as "
        "unsubscribe@mail.example.com"
    )
# --- Broadcast sending (broadcasts.pipeline) -------------------------------------------------------
# Deliveries per send task; each task sends them in calls of the transport's size.
BROADCAST_BATCH_SIZE = env_int("BROADCAST_BATCH_SIZE", 1000, minimum=1)
# Send attempts of one delivery (transient errors back off 5 s, 10 s, ... up to 5 min).
BROADCAST_MAX_ATTEMPTS = env_int("BROADCAST_MAX_ATTEMPTS", 5, minimum=1)
# Per-account send rate (0: unlimited); each account is limited on its own.
BROADCAST_RATE_PER_SECOND = env_int("BROADCAST_RATE_PER_SECOND", 0, minimum=0)
BROADCAST_RATE_PER_HOUR = env_int("BROADCAST_RATE_PER_HOUR", 0, minimum=0)
# A broadcast pauses itself when more than this share of at least _MIN_SENDS messages failed.
BROADCAST_PAUSE_FAILURE_RATE = env_fraction("BROADCAST_PAUSE_FAILURE_RATE", 0.2)
BROADCAST_PAUSE_MIN_SENDS = env_int("BROADCAST_PAUSE_MIN_SENDS", 50, minimum=1)
# The sweeper (every ten seconds) takes a send task for dead once its claim's heartbeat, written
# every fifth of this, is this old; it then settles what the task left from its send journal.
BROADCAST_HEARTBEAT_TIMEOUT = env_int("BROADCAST_HEARTBEAT_TIMEOUT", 15, minimum=5)
# Without Redis (no heartbeat or journal to read) a claim untouched this long is taken for dead
# and its deliveries "sending" become unknown: longer than any send call (mail timeouts) lasts.
BROADCAST_SENDING_TIMEOUT = env_int("BROADCAST_SENDING_TIMEOUT", 300, minimum=60)
# A sending broadcast without progress this long lost its tasks (-> batches published again).
BROADCAST_STALL_TIMEOUT = env_int("BROADCAST_STALL_TIMEOUT", 180, minimum=30)
# How long a send task keeps trying to write a send call's outcomes through a database outage
# (reconnecting) before it leaves them to the sweeper.
BROADCAST_OUTCOME_RETRY = env_int("BROADCAST_OUTCOME_RETRY", 60, minimum=0)

# --- Sequences (sequences.engine) ------------------------------------------------------------------
# Subscriptions one scheduler transaction claims and moves (and at most as many deliveries).
SEQUENCE_CLAIM_BATCH = env_int("SEQUENCE_CLAIM_BATCH", 2000, minimum=1)
# Automations: outbox events consumed per transaction, journeys claimed per transaction, and how
# deep a chain of rules and automations triggering each other may go before it is stopped.
AUTOMATION_EVENT_BATCH = env_int("AUTOMATION_EVENT_BATCH", 5000, minimum=1)
AUTOMATION_CLAIM_BATCH = env_int("AUTOMATION_CLAIM_BATCH", 5000, minimum=1)
AUTOMATION_MAX_DEPTH = env_int("AUTOMATION_MAX_DEPTH", 10, minimum=1)

# Outgoing webhooks (webhooks/): deliveries one worker claims at a time, POSTs in flight at once
# per worker process, delivery runs at once (one per worker process kept busy), the timeouts of
# each POST, and (development and tests only) whether loopback and private addresses may be
# targets.
WEBHOOK_DELIVERY_BATCH = env_int("WEBHOOK_DELIVERY_BATCH", 500, minimum=1)
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", 32, minimum=1)
WEBHOOK_DELIVERY_RUNS = env_int("WEBHOOK_DELIVERY_RUNS", 2, minimum=1)
WEBHOOK_CONNECT_TIMEOUT = env_int("WEBHOOK_CONNECT_TIMEOUT", 5, minimum=1)
WEBHOOK_READ_TIMEOUT = env_int("WEBHOOK_READ_TIMEOUT", 10, minimum=1)
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)

# --- Creator logins --------------------------------------------------------------------------------
# Login attempts (COUNT/SECONDS, right or wrong) per address and per client IP (an IPv6 /64); past
# either, the login form refuses without checking the password until the window ends.
LOGIN_LIMIT_PER_ADDRESS = env_rate("LOGIN_LIMIT_PER_ADDRESS", "10/900")
LOGIN_LIMIT_PER_IP = env_rate("LOGIN_LIMIT_PER_IP", "50/900")
# Sign-up and password reset emails a visitor may ask for, per address and per client IP.
ACCOUNT_MAIL_LIMIT_PER_ADDRESS = env_rate("ACCOUNT_MAIL_LIMIT_PER_ADDRESS", "5/3600")
ACCOUNT_MAIL_LIMIT_PER_IP = env_rate("ACCOUNT_MAIL_LIMIT_PER_IP", "30/3600")

# --- Public signup forms ---------------------------------------------------------------------------
# Limits on the public subscribe endpoint (COUNT/SECONDS), against list bombing; see
# docs/operations.md.
SIGNUP_LIMIT_PER_IP = env_rate("SIGNUP_LIMIT_PER_IP", "30/600")
SIGNUP_LIMIT_PER_ADDRESS = env_rate("SIGNUP_LIMIT_PER_ADDRESS", "5/3600")
SIGNUP_LIMIT_PER_FORM = env_rate("SIGNUP_LIMIT_PER_FORM", "1000/600")
# How long a double opt-in confirmation link works.
CONFIRMATION_LINK_DAYS = env_int("CONFIRMATION_LINK_DAYS", 7, minimum=1)
# Proxies (load balancers) in front of gunicorn that append to X-Forwarded-For; 0 trusts none.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- REST API (/v4/) --------------------------------------------------------------------------------
# Requests per API key (COUNT/SECONDS); past it the API answers 429 with Retry-After.
API_RATE_LIMIT = env_rate("API_RATE_LIMIT", "120/60")
# Requests per OAuth access token (COUNT/SECONDS), as Kit allows an OAuth app more than a key.
API_OAUTH_RATE_LIMIT = env_rate("API_OAUTH_RATE_LIMIT", "600/60")
# Bytes of bulk request bodies an account may have queued at once (Kit's 300 MB); a request
# that would go past it is a 413, and nothing is stored.
API_BULK_QUEUED_BYTES = env_int("API_BULK_QUEUED_BYTES", 300 * 1024 * 1024, minimum=1024)
# OAuth 2.0 for third-party apps (django-oauth-toolkit, api.oauth): authorization code with PKCE
# always, one scope as Kit has, refresh tokens rotated on each use.
OAUTH2_PROVIDER = {
    "OAUTH2_VALIDATOR_CLASS": "api.oauth.AccountOAuth2Validator",
    "SCOPES": {
        "public": "Read and change this account's subscribers, tags, forms, sequences, "
        "broadcasts and webhooks"
    },
    "DEFAULT_SCOPES": ["public"],
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("OAUTH_ACCESS_TOKEN_SECONDS", 7200, minimum=60),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int(
        "OAUTH_REFRESH_TOKEN_SECONDS", 90 * 24 * 3600, minimum=3600
    ),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"] if DEBUG else ["https"],
    # The OAuth 2.0 Security BCP (RFC 9700): no implicit or password grant, PKCE with S256
    # only, tokens in the Authorization header only and stored hashed, `iss` in the
    # authorization response, and a replayed refresh token revokes its whole family.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
}
# DOT's own models, named so that api.models can point at them (they are swappable).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"

# --- Tracking: open pixel, click redirect, ESP webhooks --------------------------------------------
# Base URL of pixel and click links (a separate tracking host, if wanted); SITE_URL by default.
TRACKING_URL = (env_str("TRACKING_URL") or SITE_URL).rstrip("/")
# The web process buffers events and hands them to Redis this often (and when the buffer is full).
TRACKING_FLUSH_MS = env_int("TRACKING_FLUSH_MS", 100, minimum=10)
TRACKING_BUFFER_EVENTS = env_int("TRACKING_BUFFER_EVENTS", 1000, minimum=1)
# Clicks this many seconds or less after the message was sent are taken for a link scanner's.
TRACKING_SCANNER_SECONDS = env_int("TRACKING_SCANNER_SECONDS", 10, minimum=0)
# More clicks than this per minute from one address (per web process) are flagged as machine.
TRACKING_CLICKS_PER_IP_PER_MINUTE = env_int("TRACKING_CLICKS_PER_IP_PER_MINUTE", 120, minimum=1)
# Events per drain transaction.
TRACKING_DRAIN_BATCH = env_int("TRACKING_DRAIN_BATCH", 5000, minimum=1)
# Consecutive soft bounces (no delivery between) that make a subscriber bounced.
SOFT_BOUNCE_LIMIT = env_int("SOFT_BOUNCE_LIMIT", 3, minimum=1)

# ANYMAIL_POSTMARK_SERVER_TOKEN=... becomes ANYMAIL["POSTMARK_SERVER_TOKEN"], and so on for any ESP.
ANYMAIL = {key: anymail_setting(key, value) for key, value in env_prefixed("ANYMAIL_").items()}
# Without a secret anymail would accept any POST to most ESPs' webhooks (anyone could mark
# subscribers bounced); an unguessable one refuses them all until ANYMAIL_WEBHOOK_SECRET is set.
ANYMAIL_WEBHOOK_SECRET_SET = "WEBHOOK_SECRET" in ANYMAIL
ANYMAIL.setdefault("WEBHOOK_SECRET", f"unset:{secrets.token_urlsafe(32)}")
# Where the development SMTP sink writes captured messages; the DEBUG-only mailbox page reads them.
MAILBOX_DIR = Path(env_str("MAILBOX_DIR") or BASE_DIR / ".local" / "mail")

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- The image library (content.images) -----------------------------------------------------------
# Largest image a creator may upload, and the most pixels (width x height, summed over the frames
# of an animated GIF) one may decode to: a small file declaring huge dimensions is refused.
IMAGE_MAX_BYTES = env_int("IMAGE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 50_000_000, minimum=10_000)
# Images are files that go into emails, so their URLs are absolute, public and never expire.
# "filesystem" (MEDIA_ROOT, served by the app under /media/) or "s3" (any S3-compatible bucket).
IMAGE_STORAGE = (env_str("IMAGE_STORAGE") or "filesystem").strip().lower()
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / ".local" / "media")
MEDIA_URL = "/media/"
# Immutable files (each upload gets a new random key): caches may keep them for a year.
IMAGE_CACHE_CONTROL = "public, max-age=31536000, immutable"
if IMAGE_STORAGE == "filesystem":
    STORAGES["images"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": SITE_URL + MEDIA_URL},
    }
elif IMAGE_STORAGE == "s3":
    _bucket = env_str("IMAGE_S3_BUCKET")
    if not _bucket:
        raise ImproperlyConfigured("IMAGE_S3_BUCKET is required when IMAGE_STORAGE=s3")
    _s3_options = {
        "bucket_name": _bucket,
        "endpoint_url": env_str("IMAGE_S3_ENDPOINT_URL") or None,
        "region_name": env_str("IMAGE_S3_REGION") or None,
        "access_key": env_str("IMAGE_S3_ACCESS_KEY_ID") or None,
        "secret_key": env_str("IMAGE_S3_SECRET_ACCESS_KEY") or None,
        # Public, stable URLs: no signature that expires, no HEAD before each upload.
        "querystring_auth": False,
        "file_overwrite": True,
        "default_acl": env_str("IMAGE_S3_DEFAULT_ACL") or None,
        "object_parameters": {"CacheControl": IMAGE_CACHE_CONTROL},
        "addressing_style": env_str("IMAGE_S3_ADDRESSING_STYLE") or None,
    }
    if _s3_options["addressing_style"] not in (None, "auto", "path", "virtual"):
        raise ImproperlyConfigured(
            f"Unexpected value IMAGE_S3_ADDRESSING_STYLE={_s3_options['addressing_style']}, "
            "use auto, path or virtual"
        )
    for _name in ("IMAGE_S3_ENDPOINT_URL", "IMAGE_S3_PUBLIC_URL"):
        _url = env_str(_name)
        if _url and (urlparse(_url).scheme not in ("http", "https") or not urlparse(_url).netloc):
            raise ImproperlyConfigured(f"Unexpected value {_name}={_url}, use https://host[/path]")
    _public_url = (env_str("IMAGE_S3_PUBLIC_URL") or "").rstrip("/")
    if _public_url:
        # A CDN or the bucket's public website: https://images.example.com[/path]
        _s3_options["url_protocol"] = urlparse(_public_url).scheme + ":"
        _s3_options["custom_domain"] = _public_url.split("://", 1)[1]
    STORAGES["images"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options}
else:
    raise ImproperlyConfigured(
        f"Unexpected value IMAGE_STORAGE={IMAGE_STORAGE}, use filesystem or s3"
    )

# --- Imports --------------------------------------------------------------------------------------
# Largest CSV a creator may upload; the file is kept in PostgreSQL until the import task reads it.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 256 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Security -------------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    # Health checks come from load balancers over plain HTTP on the internal network.
    SILENCED_SYSTEM_CHECKS = ["security.W008"] if not SECURE_SSL_REDIRECT else []
    SILENCED_SYSTEM_CHECKS += ["security.W005", "security.W021"] if SECURE_HSTS_SECONDS else []

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOG_LEVEL = env_str("LOG_LEVEL") or "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}
