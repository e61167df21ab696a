"""Warden settings. Everything that differs between machines comes from the environment.

Every variable read here is listed, with a one-line comment, in `.env.example`.
"""

from __future__ import annotations

from pathlib import Path

from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from wardenproject.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
    parse_redis_url,
)

# --- Paths -----------------------------------------------------------------------------------
BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("WARDEN_VAR_DIR", str(BASE_DIR / "var")))

# --- Core ------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required unless DEBUG is true.")
    SECRET_KEY = "django-insecure-warden-development-only"  # noqa: S105 - DEBUG only
# Earlier SECRET_KEY values, comma-separated, newest first: sessions, signed links and the
# stored webhook secrets made under them stay valid while they are listed (see
# `manage.py warden_webhook reencrypt`).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Absolute base URL used in emails and links sent outside a request.
WARDEN_BASE_URL = env_str("WARDEN_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    # django.contrib.admin on a site whose login has allauth's failure limits.
    "accounts.admin_apps.WardenAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "allauth",
    "accounts.admin_apps.SignInConfig",  # allauth.account, "Sign-in" in the admin
    "accounts",
    "agents",
    "audit",
    "approvals",
    "webhooks",
]

MIDDLEWARE = [
    # First: the agents' key-only check endpoints skip the browser-oriented middleware below.
    "wardenproject.middleware.KeyOnlyHotPathMiddleware",
    # A NUL in the URL is a 404/400 before any view looks it up (PostgreSQL refuses NUL).
    "wardenproject.middleware.NulCharacterMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "wardenproject.middleware.HtmlContentSecurityPolicyMiddleware",  # django-csp, HTML only
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.CurrentOrganizationMiddleware",
]

ROOT_URLCONF = "wardenproject.urls"
WSGI_APPLICATION = "wardenproject.wsgi.application"
SITE_ID = 1

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
                "accounts.context_processors.organization",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------
# Embedded default: SQLite under var/. DATABASE_URL=postgres://... selects PostgreSQL.
_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": parse_database_url(_database_url, base_dir=BASE_DIR)}
    _postgresql = DATABASES["default"]["ENGINE"].endswith("postgresql")
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    if _postgresql:
        # psycopg prepares a statement the first time a server-binding cursor runs it on a
        # connection (Django's default is never). The running totals' read and spend and the
        # check's audit INSERT use one (wardenproject.db.prepared_cursor); Django's own
        # cursors bind on the client and never prepare. Off for a pooler that cannot keep
        # prepared statements (PgBouncer in transaction mode before 1.21).
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = (
            1 if env_bool("DATABASE_PREPARED_STATEMENTS", True) else None
        )
    if env_bool("WARDEN_AUDIT_ASYNC_COMMIT", False) and _postgresql:
        # Opt-in: allow/block audit rows of checks go through this alias, committed with
        # synchronous_commit=off (no wait for the WAL flush). A PostgreSQL crash can lose
        # the last ~0.6 s of them; approvals, decisions and everything else stay durable.
        _options = dict(DATABASES["default"]["OPTIONS"])
        _options["options"] = (_options.get("options", "") + " -c synchronous_commit=off").strip()
        DATABASES["audit_async"] = {
            **DATABASES["default"],
            "OPTIONS": _options,
            "TEST": {"MIRROR": "default"},
        }
else:
    _postgresql = False
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "warden.sqlite3"),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The alias allow/block check rows are written through (see WARDEN_AUDIT_ASYNC_COMMIT).
WARDEN_AUDIT_WRITE_ALIAS = "audit_async" if "audit_async" in DATABASES else "default"
# Group commit (audit/writer.py): on PostgreSQL, the allow/block rows of a process's
# concurrent checks are committed together, each answered only after its row has committed.
WARDEN_AUDIT_GROUP_COMMIT = env_bool("WARDEN_AUDIT_GROUP_COMMIT", _postgresql)
WARDEN_AUDIT_BATCH_MAX = env_int("WARDEN_AUDIT_BATCH_MAX", 100, minimum=1)
# Audit chain (audit/chain.py, docs/ARCHITECTURE.md "Audit chain"). The sealer task links new
# entries into their organisation's hash chain every WARDEN_AUDIT_SEAL_INTERVAL seconds, up to
# WARDEN_AUDIT_SEAL_BATCH entries per statement; ids not yet visible (a transaction still
# open) are looked at again for WARDEN_AUDIT_SEAL_LOOKBACK seconds. Each chain head is
# signed at most every WARDEN_AUDIT_CHECKPOINT_INTERVAL seconds (and at least as often, when
# there are new entries).
WARDEN_AUDIT_SEAL_INTERVAL = env_int("WARDEN_AUDIT_SEAL_INTERVAL", 2, minimum=1)
WARDEN_AUDIT_SEAL_BATCH = env_int("WARDEN_AUDIT_SEAL_BATCH", 5000, minimum=1)
WARDEN_AUDIT_SEAL_LOOKBACK = env_int("WARDEN_AUDIT_SEAL_LOOKBACK", 600, minimum=1)
WARDEN_AUDIT_CHECKPOINT_INTERVAL = env_int("WARDEN_AUDIT_CHECKPOINT_INTERVAL", 60, minimum=1)
# The overview's roll-up (insights/rollup.py) counts new checks and token usage into its
# hourly and daily tables every WARDEN_OVERVIEW_ROLLUP_INTERVAL seconds.
WARDEN_OVERVIEW_ROLLUP_INTERVAL = env_int("WARDEN_OVERVIEW_ROLLUP_INTERVAL", 60, minimum=1)
# Ed25519 private keys (base64 of 32 bytes; `python -m audit.signing` makes one), comma-
# separated: the first signs checkpoints, the others only verify (the previous key while it
# is rotated out). WARDEN_AUDIT_PUBLIC_KEYS: public keys of retired keys, verify only.
# Empty with DEBUG: a development key is made and kept in WARDEN_VAR_DIR/audit-signing.key.
# Empty without DEBUG: entries are still chained but no checkpoint is signed (every
# manage.py command warns, the sealer logs an error, verify reports the chain unsigned).
WARDEN_AUDIT_SIGNING_KEYS = env_list("WARDEN_AUDIT_SIGNING_KEYS", [])
WARDEN_AUDIT_PUBLIC_KEYS = env_list("WARDEN_AUDIT_PUBLIC_KEYS", [])


def _check_audit_keys() -> None:
    from audit.signing import BadKey, private_key_from_text, public_key_from_text

    for name, keys, read in (
        ("WARDEN_AUDIT_SIGNING_KEYS", WARDEN_AUDIT_SIGNING_KEYS, private_key_from_text),
        ("WARDEN_AUDIT_PUBLIC_KEYS", WARDEN_AUDIT_PUBLIC_KEYS, public_key_from_text),
    ):
        for position, key in enumerate(keys, start=1):
            try:
                read(key)
            except BadKey as exc:
                raise ImproperlyConfigured(f"{name}: key {position}: {exc}") from None


_check_audit_keys()
# A rule change that starts new running totals recounts the window's history in its own
# transaction when there are at most this many calls to count; more, and a task recounts
# them while the rule's limit applies to every call it would count (agents/limits.py).
WARDEN_LIMITS_RECOUNT_INLINE_ROWS = env_int("WARDEN_LIMITS_RECOUNT_INLINE_ROWS", 20_000, minimum=0)
# PostgreSQL: one organisation's decisions run one at a time (approvals/turns.py); seconds a
# decision waits for its turn before it is refused with 503 "busy" and nothing written.
WARDEN_DECISION_LOCK_TIMEOUT = env_int("WARDEN_DECISION_LOCK_TIMEOUT", 5, minimum=1)

# --- Redis, cache and Celery -----------------------------------------------------------------
# REDIS_URL selects Redis as Celery broker and cache. Without it Celery uses kombu's
# filesystem transport under var/celery/ so a real worker and beat still run with no server.
REDIS_URL = parse_redis_url(env_str("REDIS_URL")) if env_str("REDIS_URL") else ""

if REDIS_URL:
    CACHES = {
        "default": {
            # Redis, and the process's own memory while Redis does not answer
            # (wardenproject/cache.py): nothing in the cache is the truth.
            "BACKEND": "wardenproject.cache.FallbackRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "warden",
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    # kombu's Redis transport with a guard that keeps workers alive through a Redis outage
    # (wardenproject/broker.py says which bug).
    CELERY_BROKER_TRANSPORT = "wardenproject.broker:Transport"
    # Fail fast when Redis is down: the database is the truth and the sweepers re-queue,
    # so a request that commits must not stall on a broker retry loop. One retry, at once
    # (a connection that broke when Redis restarted), and bounded waits on a Redis that hangs.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "visibility_timeout": 3600,
        "max_retries": 1,
        "interval_start": 0,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
    # A worker never stops trying to reach the broker (Celery's default gives up after 100
    # attempts, some 45 minutes, and exits).
    CELERY_BROKER_CONNECTION_MAX_RETRIES = None
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        # kombu's default is ./control, relative to wherever the process was started.
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
    }

CELERY_TASK_IGNORE_RESULT = True
# Keep database connections across tasks (Celery's default closes them around every task);
# wardenproject/celery.py closes broken or CONN_MAX_AGE-old ones, as around a web request.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Periodic tasks; each app adds its own entries in its AppConfig.ready().
CELERY_BEAT_SCHEDULE: dict = {}

# --- Task queues -----------------------------------------------------------------------------
# Mail (and any other third-party call) runs on a queue of its own, consumed by workers of
# its own (`-Q mail`), so a slow mail server never delays a webhook delivery or an expiry on
# the default queue (`-Q celery`). A worker started without -Q consumes both.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = {
    "celery": {"exchange": "celery", "routing_key": "celery"},
    "mail": {"exchange": "mail", "routing_key": "mail"},
    "slack": {"exchange": "slack", "routing_key": "slack"},
}
CELERY_TASK_ROUTES = {
    "approvals.notify": {"queue": "mail"},
    "webhooks.notify_disabled": {"queue": "mail"},
    # Slack messages of held calls (approvals/slack.py): a slow or rate-limiting Slack never
    # delays a webhook or an expiry.
    "approvals.slack_post": {"queue": "slack"},
    "approvals.slack_update": {"queue": "slack"},
}

# --- Slack -----------------------------------------------------------------------------------
# The Slack Web API's base URL (tests point it at a local stand-in).
SLACK_API_URL = env_str("SLACK_API_URL", "https://slack.com/api/")
# Seconds one Slack API call may take (posting runs in a task; the interaction endpoint
# calls views.open and chat.postEphemeral inline, within Slack's 3-second window).
SLACK_TIMEOUT_SECONDS = env_int("SLACK_TIMEOUT_SECONDS", 5, minimum=1)

# --- Auth and accounts -----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_FORMS = {"signup": "accounts.forms.SignupForm"}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# allauth's rate limits (login failures per IP and per account, sign-ups, resets).
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "confirm_email": "1/3m/key",
}
INVITATION_MAX_AGE_SECONDS = env_int("WARDEN_INVITATION_MAX_AGE", 7 * 24 * 3600, minimum=60)

# --- Plans ----------------------------------------------------------------------------------
# May owners change their organisation's plan from the plan page? Off (a hosted service):
# plan changes are the operator's, in the admin or with `manage.py warden_org set-plan`.
# `make run` (self-hosted) turns it on.
WARDEN_SELF_SERVE_PLANS = env_bool("WARDEN_SELF_SERVE_PLANS", False)

# --- Email -----------------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Warden <warden@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_HOST = env_str("EMAIL_HOST")
# An explicit backend wins (e.g. console on purpose, or a provider's backend).
_email_backend = env_str("EMAIL_BACKEND")
if EMAIL_HOST:
    EMAIL_BACKEND = _email_backend or "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 10
elif _email_backend or DEBUG:
    EMAIL_BACKEND = _email_backend or "django.core.mail.backends.console.EmailBackend"
else:
    # The console backend would put sign-up, password-reset and invitation links (each one
    # a way into an account) in the server log.
    raise ImproperlyConfigured(
        "No way to send email: set EMAIL_HOST (SMTP), or set EMAIL_BACKEND explicitly "
        "(django.core.mail.backends.console.EmailBackend prints every email, with its "
        "sign-in links, to the server log). DEBUG is false."
    )

# --- API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The one strict JSON reader (wardenproject.strictjson) for DRF views' bodies as well.
    "DEFAULT_PARSER_CLASSES": ["wardenproject.strictjson.StrictJSONParser"],
    "EXCEPTION_HANDLER": "wardenproject.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Warden API",
    "DESCRIPTION": "Policy checks, approvals, audit and webhooks for AI agent tool calls.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Request bodies get their own components (no read-only fields in them).
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for each set of choices that several fields share.
    "ENUM_NAME_OVERRIDES": {
        "KeyKindEnum": ["agent", "org", "approver"],
        "GrantKindEnum": ["identical", "session", "amount"],
        "DecisionEnum": ["allow", "requires_approval", "block"],
        "CheckStatusEnum": ["allowed", "blocked", "pending"],
        "ActionStatusEnum": [
            "allowed",
            "blocked",
            "pending",
            "approved",
            "denied",
            "expired",
            "cancelled",
        ],
        "ApprovalStatusEnum": "approvals.models.ApprovalRequest.Status",
        "ArdenStatusEnum": ["pending", "approved", "denied"],
        "OutcomeStatusEnum": ["success", "failed", "blocked"],
        "SdkLogStatusEnum": ["success", "blocked", "failed", "pending_approval"],
        "DeliveryStatusEnum": "webhooks.models.Delivery.Status",
    },
    # "Authorize" with an API key survives a reload of the docs page.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    "TAGS": [
        {"name": "check", "description": "Decide one tool call (the hot path)."},
        {
            "name": "Arden SDK (compatible)",
            "description": "The endpoints of the Arden SDK (ardenpy), at the server root "
            "(docs/API.md, Wire contract). The key identifies one agent.",
        },
        {
            "name": "AgentWarden SDK (compatible)",
            "description": "The endpoints of the AgentWarden SDK (agentwarden), at the server "
            "root. The key belongs to the organisation; the agent is named in the body.",
        },
    ],
}
# Largest accepted JSON request body on every API endpoint, in bytes (413 above it; policy
# documents have their own limit, 1 MiB).
WARDEN_MAX_BODY_BYTES = env_int("WARDEN_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(WARDEN_MAX_BODY_BYTES, 2_621_440)

# --- Webhooks --------------------------------------------------------------------------------
# Allow webhook URLs that resolve to loopback/private/link-local addresses (tests, labs).
WARDEN_WEBHOOKS_ALLOW_PRIVATE = env_bool("WARDEN_WEBHOOKS_ALLOW_PRIVATE", False)
# Allow plain http:// webhook URLs (otherwise HTTPS is required).
WARDEN_WEBHOOKS_ALLOW_HTTP = env_bool("WARDEN_WEBHOOKS_ALLOW_HTTP", False)

# --- MCP gateway (manage.py warden_mcp serve; upstream URLs obey the two settings above) -----
# Seconds an upstream MCP server gets to connect and to answer each request, unless the
# server's own timeout_seconds says otherwise.
WARDEN_MCP_UPSTREAM_TIMEOUT = env_int("WARDEN_MCP_UPSTREAM_TIMEOUT", 30, minimum=1)
# Seconds between two reads of a held tools/call's approval (each sends a progress note).
WARDEN_MCP_HOLD_POLL_SECONDS = env_int("WARDEN_MCP_HOLD_POLL_SECONDS", 1, minimum=1)
# Threads (each with its own database connection) for the gateway's checks and records.
WARDEN_MCP_DB_THREADS = env_int("WARDEN_MCP_DB_THREADS", 16, minimum=1)

# --- Static files and i18n -------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from here after collectstatic
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production, i.e. not DEBUG) ---------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    if env_bool("WARDEN_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        # Rate limits key on the client address: trust the one proxy's X-Forwarded-For.
        ALLAUTH_TRUSTED_PROXY_COUNT = 1

# --- Content-Security-Policy (django-csp) ----------------------------------------------------
# Scripts, styles, images and fonts only from this origin (static/): no inline script, no
# inline style, no eval. Pages keep their scripts in static/*.js and their styles in
# static/*.css; the API docs use drf-spectacular's split Swagger view (no inline script).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not a logging level.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
