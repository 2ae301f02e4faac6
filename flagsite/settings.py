"""Flagsite settings, all from environment variables (12-factor).

No DATABASE_URL -> SQLite file db.sqlite3; no REDIS_URL -> locmem cache, in-memory channel layer
and eager Celery. With them: PostgreSQL (psycopg 3) and Redis.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default):
    value = os.environ.get(name)
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


DEFAULT_SECRET_KEY = "dev-insecure-flagsite-secret-key-change-me"
DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Production (FLAGS_PRODUCTION=true): refuse to start when unsafe; HTTPS-only cookies, HSTS, redirect.
# The embedded run and the tests keep the defaults (plain HTTP on localhost).
FLAGS_PRODUCTION = env_bool("FLAGS_PRODUCTION")
if FLAGS_PRODUCTION and DEBUG:
    raise SystemExit("flagsite: refusing to start: DEBUG must be off when FLAGS_PRODUCTION=true")
if FLAGS_PRODUCTION and (SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50):
    raise SystemExit("flagsite: refusing to start: set SECRET_KEY (50+ random characters) when FLAGS_PRODUCTION=true")
# An edge relay (relay/, `manage.py relay`): the upstream's URL. See "Edge relay mode" below.
FLAGS_RELAY = os.environ.get("FLAGS_RELAY", "").rstrip("/")
# Audit chain and checkpoints are HMAC-SHA256 with a key kept outside the database (README "Audit
# threat model"): FLAGS_AUDIT_KEY or FLAGS_AUDIT_KEY_FILE; the embedded run makes artifacts/audit.key.
# A relay writes no audit entries (it has no database): it needs no key.
try:
    from audit.keyfile import AuditKeyError, load_audit_key

    FLAGS_AUDIT_KEY = None if FLAGS_RELAY else load_audit_key(
        os.environ, production=FLAGS_PRODUCTION, default_path=BASE_DIR / "artifacts" / "audit.key")
except AuditKeyError as exc:
    raise SystemExit(f"flagsite: refusing to start: {exc}") from None
# Signed checkpoints (manage.py audit_checkpoint; Celery beat every FLAGS_AUDIT_CHECKPOINT_MINUTES,
# flagsite/celery.py): appended to this JSON-lines file ("": none), logged, and POSTed to the
# webhook when set. verify_audit --checkpoints FILE checks the chain against them.
FLAGS_AUDIT_CHECKPOINT_FILE = os.environ.get("FLAGS_AUDIT_CHECKPOINT_FILE",
                                             str(BASE_DIR / "artifacts" / "audit-checkpoints.jsonl"))
FLAGS_AUDIT_CHECKPOINT_WEBHOOK = os.environ.get("FLAGS_AUDIT_CHECKPOINT_WEBHOOK", "")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=FLAGS_PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^api/health$", r"^metrics$"]  # probes from inside the network speak plain HTTP
if env_bool("SECURE_PROXY_SSL_HEADER"):  # opt in only behind a proxy that sets (and strips) X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000" if FLAGS_PRODUCTION else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=FLAGS_PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")  # a commitment to browsers' lists: opt in
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=FLAGS_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # pages post forms with {% csrf_token %}; no script reads the cookie
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]  # preload off on purpose

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files for /api/docs, served here (no CDN)
    "channels",
    "projects",
    "flags",
    "segments",
    "audit",
    "analytics",
    "experiments",  # events and exposures (issue 20)
    "webhooks",  # subscriptions following the audit log, signed deliveries (issue 19)
    "changes",  # scheduled changes and rollout plans (issue 19)
    "relay",  # the edge relay: upstream API for relays, and the relay mode (issue 21)
    "grpc_api",
    "corsheaders",
    "flagsite.ops",
    "axes",  # failed admin logins (flagsite/ops/login_limits.py)
]

MIDDLEWARE = [
    "relay.middleware.RelayModeMiddleware",  # relay mode: routes that need a database answer 503
    "flags.fastlane.FastLaneMiddleware",  # warm evaluations answered before the rest (flags/fastlane.py)
    "flagsite.ops.middleware.RequestIdMiddleware",  # first: request id + latency for everything below
    "projects.scope.ScopeMiddleware",  # each request starts in the default project (projects/scope.py)
    "flagsite.ops.chunked.ChunkedBodyMiddleware",  # chunked bodies get a Content-Length (read to their end)
    "corsheaders.middleware.CorsMiddleware",
    "flagsite.ops.compression.JsonGZipMiddleware",  # large /api/ and /ofrep/ JSON only
    "django.middleware.security.SecurityMiddleware",
    "flagsite.ops.csp.ContentSecurityPolicyMiddleware",  # every HTML page (dashboard, admin, /api/docs)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "flagsite.ops.browser.SessionMiddleware",  # these three skip FLAGS_KEY_ONLY_PATHS
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "flagsite.ops.browser.AuthenticationMiddleware",
    "projects.scope.SessionProjectMiddleware",  # staff pages: the project picked in the header
    "flagsite.ops.browser.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its 429 answer
]

# Failed admin logins (django-axes, flagsite/ops/login_limits.py): after FLAGS_LOGIN_FAILURE_LIMIT
# wrong passwords from one client address, or for one account, that address / account is locked out
# (429, even with the right password) for FLAGS_LOGIN_COOLOFF_MINUTES, counted from its last failure.
# Attempts are database rows: shared by every node, and nothing depends on Redis.
# PasswordBackend: Django's ModelBackend, refusing passwords when FLAGS_PASSWORD_LOGIN is off;
# OIDCBackend: single sign-on, inert unless FLAGS_OIDC is on (flagsite/sso.py);
# RoleBackend: project members hold their role's permissions in the current project (projects/policy.py)
AUTHENTICATION_BACKENDS = ["flagsite.ops.login_limits.LoginLimitBackend", "flagsite.sso.PasswordBackend",
                           "flagsite.sso.OIDCBackend", "projects.policy.RoleBackend"]
AXES_ENABLED = env_bool("FLAGS_LOGIN_LIMITS", default=True)
AXES_FAILURE_LIMIT = int(os.environ.get("FLAGS_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("FLAGS_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # each on its own: per address, and per account
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "audit.actor.client_ip"  # trusted proxies (NUM_PROXIES), as audit and the API's failed-key limit
# Lockouts are lifted with `manage.py axes_reset`; axes' own admin pages (attempt logs any staff user
# could edit or delete) stay off, so the admin holds only what the permission matrix covers.
AXES_ENABLE_ADMIN = False

ROOT_URLCONF = "flagsite.urls"
WSGI_APPLICATION = "flagsite.wsgi.application"
ASGI_APPLICATION = "flagsite.asgi.application"

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
                "projects.scope.switcher",
            ],
        },
    },
]


# SQLite: wait for locks, and take the write lock at BEGIN (a deferred transaction that reads,
# then writes, fails at once with "database is locked" under load). WAL: readers never wait for a
# writer's commit. In the default rollback journal an evaluation re-checking its snapshot version
# could wait out an analytics rollup's commit: bench/rest.py evaluate p99 at c=50 went from 45 ms
# (rounds 18-96) to 28 ms (15-29) with WAL alone.
SQLITE_OPTIONS = {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}


def database_from_url(url):
    """postgres://user:pass@host:port/name?opt=v -> Django DATABASES entry (psycopg 3)."""
    parts = urlparse(url)
    if parts.scheme in {"sqlite", "sqlite3"}:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:]) or BASE_DIR / "db.sqlite3",
                "OPTIONS": SQLITE_OPTIONS}
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise RuntimeError(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use postgres:// or sqlite:///)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "flagsite",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # DB_POOL=true: psycopg's pool per process (Django 5.1+), which needs CONN_MAX_AGE 0
        "CONN_MAX_AGE": 0 if env_bool("DB_POOL") else int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        "CONN_HEALTH_CHECKS": not env_bool("DB_POOL"),
        "OPTIONS": {**dict(parse_qsl(parts.query)), **(db_pool_options() if env_bool("DB_POOL") else {})},
    }


def db_pool_options():
    return {"pool": {"min_size": int(os.environ.get("DB_POOL_MIN", "2")), "max_size": int(os.environ.get("DB_POOL_MAX", "20")),
                     "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10"))}}


# Edge relay mode (relay/, `manage.py relay`): FLAGS_RELAY is the upstream's URL (a primary or
# another relay; read near the top, the audit key depends on it). A relay has no database of its own
# (an in-memory SQLite with no tables; routes that would need one answer 404 "not_on_relay", see
# relay/middleware.py) and no Redis: it serves the snapshots and key hashes it follows from the
# upstream, and sends counts, exposures and events back in batches (relay/outbox.py).
FLAGS_RELAY_TOKEN = os.environ.get("FLAGS_RELAY_TOKEN", "")
FLAGS_RELAY_SNAPSHOT_FILE = os.environ.get("FLAGS_RELAY_SNAPSHOT_FILE", "")  # start from it, keep it current
FLAGS_RELAY_OUTBOX_MAX = int(os.environ.get("FLAGS_RELAY_OUTBOX_MAX", "1000"))  # batches kept while upstream is away
FLAGS_RELAY_FLUSH_SECONDS = float(os.environ.get("FLAGS_RELAY_FLUSH_SECONDS", "2"))
FLAGS_RELAY_STALE_SECONDS = float(os.environ.get("FLAGS_RELAY_STALE_SECONDS", "5"))  # disconnected longer: stale
FLAGS_RELAY_BACKOFF_MAX = float(os.environ.get("FLAGS_RELAY_BACKOFF_MAX", "5"))  # reconnect delay cap (seconds)

DATABASE_URL = "" if FLAGS_RELAY else os.environ.get("DATABASE_URL", "")
if FLAGS_RELAY:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
elif DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            # a file, not shared-cache memory, so tests with threads wait on locks instead of failing
            "TEST": {"NAME": os.environ.get("FLAGSITE_TEST_DB") or BASE_DIR / "test-db.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = "" if FLAGS_RELAY else os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "flagsite"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A thread waits (up to 2 s) for a free connection instead of failing with "Too many
                # connections": daphne runs each sync request in its own thread (bench/soak.py saw
                # >100 at once, redis-py's default cap, and the rate limiter skipped).
                "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
                # Redis answers in well under a millisecond; a hung one must not hold requests for long
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                "CONNECTION_POOL_KWARGS": {"max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", "100")),
                                           "timeout": 2},
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout above channels_redis's 5 s blocking read: at redis-py's default (5 s too)
            # an idle notice listener times out every few seconds and misses notices while it rejoins
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                       "prefix": os.environ.get("CACHE_KEY_PREFIX", "flagsite")},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "flagsite"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # eager tasks still take a producer from the broker pool; a host in the URL keeps kombu from
    # warning "No hostname was supplied" on every analytics flush
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_TASK_ALWAYS_EAGER = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "artifacts" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in the embedded run
WHITENOISE_ROOT = BASE_DIR / "flagsite" / "public"  # served at /: /favicon.ico, which browsers ask for on every page

LOGIN_URL = "/admin/login/"

# Single sign-on with OpenID Connect for the dashboard and admin (README "Single sign-on";
# flagsite/sso.py, projects/sso.py). Off by default. Endpoints come from the issuer's discovery
# document unless all four are set. `manage.py check` (run by migrate and bootstrap) reports a bad
# or incomplete configuration.
FLAGS_OIDC = env_bool("FLAGS_OIDC")
FLAGS_OIDC_ISSUER = os.environ.get("FLAGS_OIDC_ISSUER", "").rstrip("/")
FLAGS_OIDC_AUTHORIZATION_ENDPOINT = os.environ.get("FLAGS_OIDC_AUTHORIZATION_ENDPOINT", "")
FLAGS_OIDC_TOKEN_ENDPOINT = os.environ.get("FLAGS_OIDC_TOKEN_ENDPOINT", "")
FLAGS_OIDC_USERINFO_ENDPOINT = os.environ.get("FLAGS_OIDC_USERINFO_ENDPOINT", "")
FLAGS_OIDC_JWKS_URI = os.environ.get("FLAGS_OIDC_JWKS_URI", "")
FLAGS_OIDC_CLIENT_ID = os.environ.get("FLAGS_OIDC_CLIENT_ID", "")
FLAGS_OIDC_CLIENT_SECRET = os.environ.get("FLAGS_OIDC_CLIENT_SECRET", "")
FLAGS_OIDC_SCOPES = os.environ.get("FLAGS_OIDC_SCOPES", "openid email profile")
FLAGS_OIDC_SIGN_ALGO = os.environ.get("FLAGS_OIDC_SIGN_ALGO", "RS256")
FLAGS_OIDC_USERNAME_CLAIM = os.environ.get("FLAGS_OIDC_USERNAME_CLAIM", "email")
FLAGS_OIDC_GROUPS_CLAIM = os.environ.get("FLAGS_OIDC_GROUPS_CLAIM", "groups")  # "a.b": claim a's member b
# {"<claim group>": [{"project": "payments", "role": "editor", "environments": ["development"]}]}
# (environments optional); every claim group listed becomes the Django group "oidc:<claim group>".
FLAGS_OIDC_GROUP_ROLES = os.environ.get("FLAGS_OIDC_GROUP_ROLES", "{}")  # that dict, or it as JSON text
FLAGS_OIDC_STAFF_GROUPS = env_list("FLAGS_OIDC_STAFF_GROUPS", [])  # set: SSO decides is_staff at each login
FLAGS_OIDC_SUPERUSER_GROUPS = env_list("FLAGS_OIDC_SUPERUSER_GROUPS", [])  # set: SSO decides is_superuser
FLAGS_OIDC_BUTTON_LABEL = os.environ.get("FLAGS_OIDC_BUTTON_LABEL", "Sign in with SSO")
FLAGS_OIDC_TIMEOUT = float(os.environ.get("FLAGS_OIDC_TIMEOUT", "10"))  # seconds per call to the provider
# An SSO session ends after this many seconds: roles removed at the provider apply by then at the latest.
FLAGS_OIDC_SESSION_SECONDS = int(os.environ.get("FLAGS_OIDC_SESSION_SECONDS", str(12 * 3600)))
# false: only SSO signs in (the login page offers no form; a password POST is refused).
FLAGS_PASSWORD_LOGIN = env_bool("FLAGS_PASSWORD_LOGIN", default=True)

# Flags
FLAGS_MAX_STALENESS_MS = int(os.environ.get("FLAGS_MAX_STALENESS_MS", "100"))
# Off: writes send no channel-layer notice and watchers rely on their version poll alone (the
# fallback path; tests use it to prove a lost notice costs nothing but latency).
FLAGS_CHANGE_NOTICES = env_bool("FLAGS_CHANGE_NOTICES", default=True)
FLAGS_WS_PING_SECONDS = float(os.environ.get("FLAGS_WS_PING_SECONDS", "20"))  # app-level ping to idle /ws clients
FLAGS_DEFAULT_ENVIRONMENT = os.environ.get("FLAGS_DEFAULT_ENVIRONMENT", "development")
# OFREP (/ofrep/v1/...) requests per API key (else user, else address): "N/s", "N/m", "N/h" or "off".
FLAGS_OFREP_RATE_LIMIT = os.environ.get("FLAGS_OFREP_RATE_LIMIT", "1000/s")
# Analytics: evaluation counters flush to the rollup task every N seconds (a background thread per
# process, started on the first evaluation); AUTOFLUSH off leaves flushing to explicit calls (tests).
FLAGS_ANALYTICS_FLUSH_SECONDS = float(os.environ.get("FLAGS_ANALYTICS_FLUSH_SECONDS", "5"))
FLAGS_ANALYTICS_AUTOFLUSH = env_bool("FLAGS_ANALYTICS_AUTOFLUSH", default=True)
# Scheduled changes (changes/): due ones are applied every N seconds, by Celery beat's
# changes.apply_due_changes with Redis, else by a thread in each web process (changes/runner.py;
# RUNNER off: neither starts it, e.g. tests, which drive the applier with a clock).
FLAGS_SCHEDULED_CHANGES_INTERVAL = float(os.environ.get("FLAGS_SCHEDULED_CHANGES_INTERVAL", "30"))
FLAGS_SCHEDULED_CHANGES_RUNNER = env_bool("FLAGS_SCHEDULED_CHANGES_RUNNER", default=True)
# Events (POST /api/events, gRPC Track): at most N events per batch and N bytes per body (413 past
# either); at most N events waiting in a process's buffer for the next flush (503 past it, clients
# retry). Exposures: recorded when an evaluation returns a variant (experiments/buffers.py);
# SEEN_MAX bounds the in-process dedupe table. All flushed with the analytics counters.
FLAGS_EVENTS_MAX_BATCH = int(os.environ.get("FLAGS_EVENTS_MAX_BATCH", "1000"))
FLAGS_EVENTS_MAX_BYTES = int(os.environ.get("FLAGS_EVENTS_MAX_BYTES", "1000000"))
FLAGS_EVENTS_BUFFER_MAX = int(os.environ.get("FLAGS_EVENTS_BUFFER_MAX", "200000"))
FLAGS_EXPOSURES = env_bool("FLAGS_EXPOSURES", default=True)
FLAGS_EXPOSURES_SEEN_MAX = int(os.environ.get("FLAGS_EXPOSURES_SEEN_MAX", "500000"))
# "Evaluate as" offers recent real contexts: at most one per flag per second sampled, the last 10
# per flag kept 24 h in the cache (analytics/recent.py). false: nothing sampled, stored or shown.
FLAGS_RECENT_CONTEXTS = env_bool("FLAGS_RECENT_CONTEXTS", default=True)

# Webhooks (webhooks/, README "Webhooks"): secrets are encrypted under FLAGS_WEBHOOK_KEY (comma-separated
# to rotate: the first encrypts, any decrypts), else a key derived from SECRET_KEY. Each attempt waits
# TIMEOUT seconds; failures retry up to MAX_ATTEMPTS times after BACKOFF * 2^(n-1) seconds (capped at
# BACKOFF_MAX, half of it random); DISABLE_AFTER failed attempts in a row turn the subscription off.
# TICK: the beat safety net's period, and the embedded runner's (webhooks/runner.py, RUNNER=false: none).
FLAGS_WEBHOOK_KEY = os.environ.get("FLAGS_WEBHOOK_KEY", "")
FLAGS_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("FLAGS_WEBHOOK_TIMEOUT_SECONDS", "10"))
FLAGS_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("FLAGS_WEBHOOK_MAX_ATTEMPTS", "10"))
FLAGS_WEBHOOK_BACKOFF_SECONDS = float(os.environ.get("FLAGS_WEBHOOK_BACKOFF_SECONDS", "30"))
FLAGS_WEBHOOK_BACKOFF_MAX_SECONDS = float(os.environ.get("FLAGS_WEBHOOK_BACKOFF_MAX_SECONDS", "3600"))
FLAGS_WEBHOOK_DISABLE_AFTER = int(os.environ.get("FLAGS_WEBHOOK_DISABLE_AFTER", "20"))
FLAGS_WEBHOOK_TICK_SECONDS = float(os.environ.get("FLAGS_WEBHOOK_TICK_SECONDS", "10"))
FLAGS_WEBHOOK_RUNNER = env_bool("FLAGS_WEBHOOK_RUNNER", default=True)
# false: targets resolving to loopback/private/link-local addresses are refused (checked per attempt)
FLAGS_WEBHOOK_ALLOW_PRIVATE = env_bool("FLAGS_WEBHOOK_ALLOW_PRIVATE", default=not FLAGS_PRODUCTION)

# REST framework and OpenAPI: owned by the API layer (flagsite/api/).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "flagsite.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["flagsite.api.permissions.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": ["flagsite.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "flagsite.api.pagination.Pagination",
    "EXCEPTION_HANDLER": "flagsite.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["flagsite.api.throttling.ApiRateThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "COERCE_DECIMAL_TO_STRING": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flagsite API",
    "DESCRIPTION": "Feature flags: management, evaluation and SDK snapshots. "
    "Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # the REST error shape as a component on every /api/ operation's error responses
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "flagsite.openapi.add_error_responses"],
    # /api/docs from our own static files (drf-spectacular-sidecar): works offline, no third-party script
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
FLAGS_API_KEY_CACHE_SECONDS = float(os.environ.get("FLAGS_API_KEY_CACHE_SECONDS", "5"))
# Machine endpoints: API keys only, no session/user/messages middleware (flagsite/ops/browser.py).
FLAGS_KEY_ONLY_PATHS = ("/api/evaluate", "/api/sdk/", "/api/events", "/ofrep/")
# Rate limits (flagsite/api/throttling.py) per API key, else user, else address: "N/s|m|h|d" or "off".
FLAGS_RATE_LIMIT_EVALUATE = os.environ.get("FLAGS_RATE_LIMIT_EVALUATE", "10000/s")  # SDK-callable views
FLAGS_RATE_LIMIT_MANAGEMENT = os.environ.get("FLAGS_RATE_LIMIT_MANAGEMENT", "6000/m")  # every other /api/ view
# Unknown/revoked API keys per client address (REST, OFREP, /ws, gRPC), then 429 until the window ends.
FLAGS_AUTH_FAILURE_LIMIT = os.environ.get("FLAGS_AUTH_FAILURE_LIMIT", "100/m")
# flagIds per bulk evaluation (REST, gRPC EvaluateBulk): 400 / INVALID_ARGUMENT past it.
# Warm evaluations skip Django's request cycle (flags/fastlane.py); off: every request through Django,
# the same answers (for comparison: bench/rest.py, or to rule the lane out when investigating).
FLAGS_FAST_LANE = env_bool("FLAGS_FAST_LANE", default=True)
FLAGS_MAX_BULK_FLAGS = int(os.environ.get("FLAGS_MAX_BULK_FLAGS", "1000"))
# Open /ws connections per API key in each web server process (granian worker); the next is closed with 4429.
FLAGS_WS_MAX_CONNECTIONS_PER_KEY = int(os.environ.get("FLAGS_WS_MAX_CONNECTIONS_PER_KEY", "500"))
# Trusted proxies in front (default none): the client address is X-Forwarded-For's Nth entry from
# the end, else REMOTE_ADDR. One setting for audit entries, logs (audit.actor.client_ip) and DRF's
# throttle ident (which, unset, would key on the whole client-supplied X-Forwarded-For).
NUM_PROXIES = int(os.environ.get("NUM_PROXIES") or 0)
REST_FRAMEWORK["NUM_PROXIES"] = NUM_PROXIES

# CORS for browser clients of evaluation, SDK and OFREP paths only (management stays same-origin).
# FLAGS_CORS_ORIGINS: "https://app.example.com,https://www.example.com" or "*"; empty: no CORS.
FLAGS_CORS_ORIGINS = env_list("FLAGS_CORS_ORIGINS", [])
CORS_URLS_REGEX = r"^/(api/evaluate(/bulk)?|api/sdk/.*|ofrep/.*)$"
CORS_ALLOW_ALL_ORIGINS = "*" in FLAGS_CORS_ORIGINS
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else FLAGS_CORS_ORIGINS
CORS_ALLOW_CREDENTIALS = env_bool("FLAGS_CORS_CREDENTIALS")  # cookies; API keys travel in headers without it
if CORS_ALLOW_ALL_ORIGINS and CORS_ALLOW_CREDENTIALS:
    raise SystemExit("flagsite: refusing to start: FLAGS_CORS_CREDENTIALS cannot be used with FLAGS_CORS_ORIGINS=*")
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "if-none-match", "x-api-key", "x-request-id")
CORS_EXPOSE_HEADERS = ("etag", "retry-after", "x-request-id")
CORS_PREFLIGHT_MAX_AGE = 86400

# Prometheus metrics at /metrics (flagsite/ops/metrics.py). With FLAGS_METRICS_TOKEN set, scrapes need
# "Authorization: Bearer <token>"; without it /metrics is open, except under FLAGS_PRODUCTION (404).
FLAGS_METRICS = env_bool("FLAGS_METRICS", default=True)
FLAGS_METRICS_TOKEN = os.environ.get("FLAGS_METRICS_TOKEN", "")
FLAGS_GZIP = env_bool("FLAGS_GZIP", default=True)  # gzip /api/ and /ofrep/ JSON answers of FLAGS_GZIP_MIN_BYTES+
FLAGS_GZIP_MIN_BYTES = int(os.environ.get("FLAGS_GZIP_MIN_BYTES", "1024"))
FLAGS_METRICS_MAX_FLAGS = int(os.environ.get("FLAGS_METRICS_MAX_FLAGS", "200"))  # per environment; the rest: "_other"

# Logs: LOG_FORMAT=json (default under FLAGS_PRODUCTION) prints one JSON object a line; every line
# carries the request id (X-Request-ID, honoured or generated; also stored in audit entries).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "flagsite.ops.logging.RequestIdFilter"},
        "quiet_refusals": {"()": "flagsite.ops.logging.QuietRefusals"},
    },
    "formatters": {
        "json": {"()": "flagsite.ops.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": os.environ.get("LOG_FORMAT", "json" if FLAGS_PRODUCTION else "text"),
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "flagsite.audit.checkpoint": {"level": "INFO"},  # each checkpoint: a copy in the logs
        "django.request": {"filters": ["quiet_refusals"]},
    },
}
