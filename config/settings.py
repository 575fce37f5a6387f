"""Statehouse settings: one module, driven by the environment.

Embedded mode (the default) needs nothing set: SQLite in ``var/``, the in-memory Celery
broker and channel layer. Production sets ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as corsheaders_default_headers
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("STATEHOUSE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _local_secret_key() -> str:
    """A key generated once into var/ for local development.

    The file is created readable by its owner only (never chmod-ed after the key is in
    it); when two processes start at once, the one that did not create it reads it.
    """
    path = VAR_DIR / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (set DEBUG=1 for local development)."
        )
    SECRET_KEY = _local_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
if env_bool("SECURE_PROXY_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "core",
    "sessions_app",
    "threads_app",
    "checkpoints_app",
    "history_app",
    # The pages, their live feeds, /metrics and /healthz (imports every app above).
    "control_room",
    "axes",
    # django-ninja's bundled Swagger UI files: /api/docs works without the internet.
    "ninja",
]

MIDDLEWARE = [
    # First, as django-cors-headers asks: it answers preflights itself.
    "corsheaders.middleware.CorsMiddleware",
    "config.middleware.ApiMethodNotAllowed",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's MessageMiddleware for the pages only (the API has no messages).
    "config.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: answers a locked-out login with the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # Under ASGI every request may run on a thread of its own, so connections are not
    # kept per thread (CONN_MAX_AGE 0); set DB_POOL_MAX to share a pool per process.
    # Health checks: a reused connection (and, under the pool, each one it hands out:
    # Django passes psycopg_pool's check, which checkpoints_app replaces with one that
    # runs only when needed, see STATEHOUSE_DB_CHECK_IDLE_S) is tried before use, so one
    # that a database restart ended is replaced, not used.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
    }
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and env_int("DB_POOL_MAX", 0):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 1),
            "max_size": env_int("DB_POOL_MAX", 0),
            "timeout": env_float("DB_POOL_TIMEOUT_S", 30.0),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "statehouse.sqlite3",
            "OPTIONS": {
                # Writers take the lock when the transaction starts, so two writers never
                # deadlock upgrading a read lock; WAL lets readers run beside one writer.
                "transaction_mode": "IMMEDIATE",
                "timeout": env_float("SQLITE_BUSY_TIMEOUT_S", 20.0),
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;"
                ),
            },
            # A file (not :memory:) so that worker threads and test threads share it.
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }
# A pooled PostgreSQL connection (Django's pool, the checkpoint saver's) is checked with a
# round trip before it is lent only if it sat idle this long, its last use ended in an
# error, or the server sent it something (as a server ending it does): not on every lend.
STATEHOUSE_DB_CHECK_IDLE_S = env_float("STATEHOUSE_DB_CHECK_IDLE_S", 1.0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "admin:login"

# Admin login lockout (django-axes): after AXES_FAILURE_LIMIT failed logins for one
# username from one client address, that pair is refused for the cool-off; the same
# username from elsewhere, and other usernames from there, are not, so an attacker cannot
# lock the real admin out. A successful login forgets the failures.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("STATEHOUSE_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("STATEHOUSE_LOGIN_COOLOFF_MIN", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.throttling.client_address"  # behind trusted proxies too
AXES_LOCKOUT_TEMPLATE = "admin/statehouse/lockout.html"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The admin writes times to the second with the zone, as the status pages do.
FORMAT_MODULE_PATH = ["core.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Serve straight from the app folders in development (no collectstatic needed).
WHITENOISE_USE_FINDERS = DEBUG

# --- Redis, Celery, Channels -----------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Runs carry database leases; the visibility timeout only bounds how long a message of a
# dead worker stays hidden, so it is kept above the longest lease.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_S", 3600)}
if CELERY_BROKER_URL.startswith("memory://"):
    # kombu polls its in-memory queues once a second by default: in embedded mode a run
    # waited up to a second to start. Looking at an in-process queue costs next to nothing.
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 0.02
# Celery's Django fixup closes every connection after each task, and in prefork workers
# Django's whole connection pool (celery/celery#10554): each run opened new PostgreSQL
# backends. With a reuse count it only does so every 2 x N tasks; config/celery.py does
# what Django does around a request instead (close_old_connections before and after each
# task: a pooled connection goes back to the pool, a broken one is dropped).
CELERY_DB_REUSE_MAX = 1000

if REDIS_URL:
    # Redis pub/sub: a push to a group is one PUBLISH, delivered to the server processes
    # whose pages or waiting requests follow it (nothing is kept for a listener that is
    # not there: pages and streams re-read the database when they connect).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": env_str("CHANNELS_PREFIX", "statehouse"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- CORS (django-cors-headers): browser apps on other origins calling the API ----------

# Only the JSON API; the admin and the pages stay same-origin.
CORS_URLS_REGEX = r"^/api/.*$"
# Production: the origins listed (e.g. https://chat.example.com); none by default.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
if DEBUG or not (DATABASE_URL or REDIS_URL):
    # Embedded mode: any local origin (a dev server on any port), as `langgraph dev` allows.
    CORS_ALLOWED_ORIGIN_REGEXES = [r"^http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"]
CORS_ALLOW_HEADERS = (*corsheaders_default_headers, "x-api-key", "last-event-id")
CORS_EXPOSE_HEADERS = ["content-location", "location"]

# --- Statehouse ------------------------------------------------------------------------

# The langgraph.json whose graphs Statehouse runs (LangGraph's own format).
STATEHOUSE_GRAPHS_FILE = env_str("STATEHOUSE_GRAPHS_FILE", str(BASE_DIR / "langgraph.json"))

# Runs: a worker holds a lease on the run it executes and renews it with a heartbeat;
# the sweeper requeues runs whose lease expired (their worker died).
STATEHOUSE_RUN_LEASE_S = env_float("STATEHOUSE_RUN_LEASE_S", 30.0)
STATEHOUSE_HEARTBEAT_S = env_float("STATEHOUSE_HEARTBEAT_S", 0)  # 0: a third of the lease
STATEHOUSE_SWEEP_INTERVAL_S = env_float("STATEHOUSE_SWEEP_INTERVAL_S", 10.0)
STATEHOUSE_RUN_MAX_ATTEMPTS = env_int("STATEHOUSE_RUN_MAX_ATTEMPTS", 3)
STATEHOUSE_RUN_TIMEOUT_S = env_float("STATEHOUSE_RUN_TIMEOUT_S", 3600.0)
# runs/wait on a thread free to start it: executed by the server process that waits,
# under the same lease, heartbeat and sweeper as in a worker (threads_app/inprocess.py);
# off, every run goes to the workers.
STATEHOUSE_WAITED_RUNS_IN_SERVER = env_bool("STATEHOUSE_WAITED_RUNS_IN_SERVER", True)
# At most this many at once in each server process; past that they go to the workers.
# Each slot keeps a database connection of its own, beside the pool (DB_POOL_MAX).
# Clients' kept-alive connections spread unevenly over the server processes: with 4, a
# third of bench/api.py's waited runs went to the workers (more statements and CPU).
STATEHOUSE_SERVER_RUN_SLOTS = env_int("STATEHOUSE_SERVER_RUN_SLOTS", 8)
# A pending run nobody picked up for this long is enqueued again (a lost message).
STATEHOUSE_PENDING_RESEND_S = env_float("STATEHOUSE_PENDING_RESEND_S", 60.0)
# The stuck-work page lists a pending run not taken by a worker within this long.
STATEHOUSE_STUCK_PENDING_S = env_float("STATEHOUSE_STUCK_PENDING_S", 120.0)
# How often each worker looks at a Redis broker: once it is back from an outage or a
# restart (queued messages lost), every pending run is sent again (threads_app/broker.py).
STATEHOUSE_BROKER_WATCH_S = env_float("STATEHOUSE_BROKER_WATCH_S", 1.0)
# Run event logs (for stream replay) older than this are deleted by the sweeper.
STATEHOUSE_RUN_EVENTS_KEEP_DAYS = env_int("STATEHOUSE_RUN_EVENTS_KEEP_DAYS", 14)
CELERY_TASK_DEFAULT_QUEUE = env_str("STATEHOUSE_QUEUE", "statehouse")

# The JSON API: requests per user (or key owner), and the largest request body.
STATEHOUSE_API_RATE = env_str("STATEHOUSE_API_RATE", "6000/m")
# Requests that fail authentication (no key, a wrong or revoked one), per client address.
STATEHOUSE_API_FAILED_AUTH_RATE = env_str("STATEHOUSE_API_FAILED_AUTH_RATE", "300/m")
# Proxies (addresses or networks) whose X-Forwarded-For names the client; none: ignore it.
STATEHOUSE_TRUSTED_PROXIES = env_list("STATEHOUSE_TRUSTED_PROXIES", [])
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("STATEHOUSE_MAX_REQUEST_BYTES", 2 * 1024 * 1024)
STATEHOUSE_API_MAX_LIMIT = 1000
STATEHOUSE_SSE_HEARTBEAT_S = env_float("STATEHOUSE_SSE_HEARTBEAT_S", 10.0)
# Threads of stateless runs (POST /runs...) are deleted this long after they finish.
STATEHOUSE_TEMPORARY_THREAD_TTL_S = env_float("STATEHOUSE_TEMPORARY_THREAD_TTL_S", 300.0)

# Largest JSON state (of one entity) the state manager accepts.
STATEHOUSE_MAX_STATE_BYTES = env_int("STATEHOUSE_MAX_STATE_BYTES", 1024 * 1024)
# Deepest nesting of a JSON value in a request (metadata, input, config...), refused past it.
STATEHOUSE_MAX_JSON_DEPTH = env_int("STATEHOUSE_MAX_JSON_DEPTH", 100)

# Checkpoint retention (manage.py prune_checkpoints): keep the newest N checkpoints of each
# thread namespace, delete those older than D days; 0 = unlimited. A namespace's latest
# checkpoint is never deleted.
STATEHOUSE_CHECKPOINT_KEEP_LAST = env_int("STATEHOUSE_CHECKPOINT_KEEP_LAST", 0)
STATEHOUSE_CHECKPOINT_MAX_AGE_DAYS = env_int("STATEHOUSE_CHECKPOINT_MAX_AGE_DAYS", 0)

# History: the session context window (messages), /metrics access, budget alert webhooks.
STATEHOUSE_CONTEXT_WINDOW = env_int("STATEHOUSE_CONTEXT_WINDOW", 20)
# Bearer token for /metrics (staff users may also read it logged in); empty: staff only.
STATEHOUSE_METRICS_TOKEN = env_str("STATEHOUSE_METRICS_TOKEN")
# Where budget alerts are POSTed when a budget names no webhook of its own (empty: none),
# and the secret their HMAC-SHA256 signature (X-Statehouse-Signature) is made with.
STATEHOUSE_ALERT_WEBHOOK_URL = env_str("STATEHOUSE_ALERT_WEBHOOK_URL")
STATEHOUSE_WEBHOOK_SECRET = env_str("STATEHOUSE_WEBHOOK_SECRET")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
