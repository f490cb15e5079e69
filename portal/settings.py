"""All settings come from environment variables; see the configuration table in docs/operators.md.

Every typed read goes through `env`, which raises ImproperlyConfigured on a value it cannot parse, so a
typo in production stops the process at start instead of silently falling back to a default.
"""

import ipaddress
import re
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from access.claims import origin as claims_origin
from access.claims import provider_app as oidc_provider_app
from access.claims import provider_ids as oidc_provider_ids

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))


class StrictEnv(environ.FileAwareEnv):
    """FileAwareEnv (`NAME_FILE` reads the secret from a file) that refuses values it cannot parse."""

    TRUE = {"1", "true", "yes", "on"}
    FALSE = {"0", "false", "no", "off", ""}

    def bool(self, var, default=environ.Env.NOTSET):
        raw = self.str(var, default=None if default is not environ.Env.NOTSET else default)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in self.TRUE:
            return True
        if value in self.FALSE:
            return False
        raise ImproperlyConfigured(f"{var} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")

    def int(self, var, default=environ.Env.NOTSET):
        raw = self.str(var, default=None if default is not environ.Env.NOTSET else default)
        if raw is None or isinstance(raw, int):
            return raw if raw is not None else default
        try:
            return int(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{var} must be an integer, got {raw!r}") from None

    def choice(self, var, choices, default):
        value = self.str(var, default=default)
        if value not in choices:
            raise ImproperlyConfigured(f"{var} must be one of {', '.join(choices)}, got {value!r}")
        return value


env = StrictEnv()


def _check_cloudfront_key(pem: str) -> None:
    """Refuse at start a key CloudFront could not verify signatures of (not PEM, encrypted, not RSA)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"CLOUDFRONT_PRIVATE_KEY_FILE must hold an unencrypted PEM private key: {exc}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured("CLOUDFRONT_PRIVATE_KEY_FILE must hold an RSA key: CloudFront verifies RSA-SHA1.")


DEBUG = env.bool("DEBUG", default=False)
# Dev mode is what `make run` sets: it creates a local reviewer account and prints emails to the console.
DEV_MODE = env.bool("PORTAL_DEV_MODE", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set; `make run` sets one for development.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute base used in emails and signed local URLs when there is no request to derive it from.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# The portal's name in page titles, the header and emails; unset, "Model access portal" in the reader's language.
SITE_NAME = env.str("SITE_NAME", default="")
# Where people write with questions about access; shown in the footer's help page when set.
CONTACT_EMAIL = env.str("CONTACT_EMAIL", default="")

INSTALLED_APPS = [
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "django_countries",
    "csp",
    "pgtrigger",
    "access",
]

MIDDLEWARE = [
    "access.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "access.middleware.RejectNulMiddleware",
    "access.gate.cache.RequestScope",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "access.middleware.AccountLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "access.middleware.DependencyErrorMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

# Per-file downloads without a session cookie (scripts, anonymous) skip what only signed-in browsers need;
# portal.handlers. An empty list sends them through MIDDLEWARE like everything else.
DOWNLOAD_MIDDLEWARE = [
    "access.middleware.RequestContextMiddleware",
    "portal.handlers.DownloadCspMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "access.middleware.RejectNulMiddleware",
    "access.gate.cache.RequestScope",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "access.middleware.DependencyErrorMiddleware",
]
if not env.bool("DOWNLOAD_FAST_STACK", default=True):
    DOWNLOAD_MIDDLEWARE = []

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
APPEND_SLASH = False

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
                "django.template.context_processors.i18n",
                "access.context_processors.portal",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the Celery worker writes.
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    # The dashboard's covering indexes carry extra columns on PostgreSQL; SQLite uses their key columns only.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://portal")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
# Country names django-countries' Chinese catalog gets wrong or outdated (尼珀尔, 塔吉克斯斯坦, two 美属萨摩亚群岛,
# 斯威士兰, 马其顿, the Comoros' full title): the same English names, translated in the portal's own catalog.
COUNTRIES_OVERRIDE = {
    "AS": _("American Samoa"),
    "KM": _("Comoros"),
    "MK": _("North Macedonia"),
    "NP": _("Nepal"),
    "SZ": _("Eswatini"),
    "TJ": _("Tajikistan"),
    "WS": _("Samoa"),
}
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Model file storage -------------------------------------------------------------------------------
STORAGE_BACKEND = env.choice("STORAGE_BACKEND", ["local", "s3"], default="local")
LOCAL_STORAGE_DIR = Path(env.str("LOCAL_STORAGE_DIR", default=str(VAR_DIR / "storage")))
S3_BUCKET = env.str("S3_BUCKET", default="")
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="") or None
S3_REGION = env.str("S3_REGION", default="us-east-1")
S3_ACCESS_KEY_ID = env.str("S3_ACCESS_KEY_ID", default="") or None
S3_SECRET_ACCESS_KEY = env.str("S3_SECRET_ACCESS_KEY", default="") or None
S3_SESSION_TOKEN = env.str("S3_SESSION_TOKEN", default="") or None
S3_ADDRESSING_STYLE = env.choice("S3_ADDRESSING_STYLE", ["auto", "path", "virtual"], default="auto")
S3_PREFIX = env.str("S3_PREFIX", default="").strip("/")
if STORAGE_BACKEND == "s3" and not S3_BUCKET:
    raise ImproperlyConfigured("STORAGE_BACKEND=s3 needs S3_BUCKET.")
# Files are hashed in pieces of this many bytes as well as whole, so a client re-fetches only a bad piece.
PIECE_SIZE = env.int("PIECE_SIZE", default=16 * 1024 * 1024)
if not 1024 <= PIECE_SIZE <= 1024**3:
    raise ImproperlyConfigured("PIECE_SIZE must be between 1024 bytes and 1 GiB.")

# Marked copies: the secret that chooses which elements each variant flips and each person's codeword. Its own
# secret (not derived from SECRET_KEY, which may be rotated): changing it makes every marked file's variants and every
# codeword unreadable. Required only where marking is used (registering or serving a marked release).
MARKING_KEY = env.str("MARKING_KEY", default="").strip()
if MARKING_KEY and len(MARKING_KEY) < 32:
    raise ImproperlyConfigured("MARKING_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`).")

# Mirrors: more named storage locations holding copies of releases. The primary storage above is one more
# location, always enabled; a mirror serves a release only once `verify_mirror` has checked its copy.
MIRROR_NAME_RE = r"^[a-z][a-z0-9-]{0,31}$"
STORAGE_NAME = env.str("STORAGE_NAME", default="primary")
STORAGE_LOCATION = env.str("STORAGE_LOCATION", default="").lower()
STORAGE_PRIORITY = env.int("STORAGE_PRIORITY", default=1)


def _location(var: str, value: str, priority: int) -> None:
    # Metalink's location is an ISO 3166-1 alpha-2 country code; its priority runs from 1 (first) to 999999.
    if value and not re.fullmatch(r"[a-z]{2}", value):
        raise ImproperlyConfigured(f"{var}_LOCATION must be a two-letter country code such as de, got {value!r}")
    if not 1 <= priority <= 999999:
        raise ImproperlyConfigured(f"{var}_PRIORITY must be between 1 and 999999, got {priority}")


def _mirror(name: str, position: int) -> dict:
    """One mirror's settings, read from MIRROR_<NAME>_* (dashes in the name become underscores)."""
    if not re.fullmatch(MIRROR_NAME_RE, name) or name == STORAGE_NAME:
        raise ImproperlyConfigured(
            f"STORAGE_MIRRORS: {name!r} must be lower-case letters, digits and dashes, and differ from STORAGE_NAME"
        )
    var = "MIRROR_" + name.upper().replace("-", "_")
    backend = env.choice(f"{var}_BACKEND", ["s3", "local"], default="s3")
    where = {
        "location": env.str(f"{var}_LOCATION", default="").lower(),
        "priority": env.int(f"{var}_PRIORITY", default=position),
    }
    _location(var, where["location"], where["priority"])
    if backend == "local":
        # A directory on the portal's own disks (a lab's storage), served like LocalStorage: signed portal URLs
        # naming the mirror, and behind nginx its own internal location.
        directory = env.str(f"{var}_LOCAL_DIR", default="")
        if not directory or not Path(directory).is_absolute():
            raise ImproperlyConfigured(f"mirror {name!r} needs {var}_LOCAL_DIR, an absolute directory path.")
        accel = _accel_location(f"{var}_LOCAL_ACCEL_REDIRECT", env.str(f"{var}_LOCAL_ACCEL_REDIRECT", default=""))
        return {"backend": backend, "dir": directory, "accel_redirect": accel, **where}
    mirror = {
        "backend": backend,
        "bucket": env.str(f"{var}_S3_BUCKET", default=""),
        "prefix": env.str(f"{var}_S3_PREFIX", default="").strip("/"),
        "endpoint_url": env.str(f"{var}_S3_ENDPOINT_URL", default="") or None,
        "region": env.str(f"{var}_S3_REGION", default="us-east-1"),
        "access_key": env.str(f"{var}_S3_ACCESS_KEY_ID", default="") or None,
        "secret_key": env.str(f"{var}_S3_SECRET_ACCESS_KEY", default="") or None,
        "session_token": env.str(f"{var}_S3_SESSION_TOKEN", default="") or None,
        "addressing_style": env.choice(f"{var}_S3_ADDRESSING_STYLE", ["auto", "path", "virtual"], default="auto"),
        **where,
    }
    if not mirror["bucket"]:
        raise ImproperlyConfigured(f"mirror {name!r} needs {var}_S3_BUCKET.")
    return mirror


def _accel_location(var: str, value: str) -> str:
    if value and not re.fullmatch(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+/", value):
        raise ImproperlyConfigured(
            f"{var} must be the path of an nginx internal location that starts and ends with /, "
            f"such as /_protected/; got {value!r}"
        )
    return value


if not re.fullmatch(MIRROR_NAME_RE, STORAGE_NAME):
    raise ImproperlyConfigured("STORAGE_NAME must be lower-case letters, digits and dashes.")
_location("STORAGE", STORAGE_LOCATION, STORAGE_PRIORITY)
_mirror_names = env.list("STORAGE_MIRRORS", default=[])
if len(set(_mirror_names)) != len(_mirror_names):
    raise ImproperlyConfigured("STORAGE_MIRRORS names a mirror twice.")
# name -> settings; the default order of locations is by priority, then primary first and mirrors as listed.
STORAGE_MIRRORS = {name: _mirror(name, position) for position, name in enumerate(_mirror_names, 2)}

# Behind nginx, LocalStorage's file view checks the signed URL and answers X-Accel-Redirect to this internal
# location, and nginx sends the bytes (docs/operators.md: "Serving local disks with nginx"). Empty: Django streams
# them.
LOCAL_STORAGE_ACCEL_REDIRECT = _accel_location(
    "LOCAL_STORAGE_ACCEL_REDIRECT", env.str("LOCAL_STORAGE_ACCEL_REDIRECT", default="")
)
# One nginx location serves one directory: two storages sharing one would be served from the same disk.
_accel_locations = [LOCAL_STORAGE_ACCEL_REDIRECT] + [m.get("accel_redirect", "") for m in STORAGE_MIRRORS.values()]
_accel_locations = [a for a in _accel_locations if a]
if len(set(_accel_locations)) != len(_accel_locations):
    raise ImproperlyConfigured("each local storage needs its own nginx location (*_ACCEL_REDIRECT), not a shared one.")
# S3 releases served through a CloudFront distribution: canned-policy signed URLs instead of SigV4 ones.
CLOUDFRONT_DOMAIN = env.str("CLOUDFRONT_DOMAIN", default="").strip()
CLOUDFRONT_KEY_PAIR_ID = env.str("CLOUDFRONT_KEY_PAIR_ID", default="").strip()
CLOUDFRONT_PRIVATE_KEY = env.str("CLOUDFRONT_PRIVATE_KEY", default="")  # PEM; use CLOUDFRONT_PRIVATE_KEY_FILE
if CLOUDFRONT_DOMAIN or CLOUDFRONT_KEY_PAIR_ID or CLOUDFRONT_PRIVATE_KEY:
    _missing = [
        name
        for name, value in (
            ("CLOUDFRONT_DOMAIN", CLOUDFRONT_DOMAIN),
            ("CLOUDFRONT_KEY_PAIR_ID", CLOUDFRONT_KEY_PAIR_ID),
            ("CLOUDFRONT_PRIVATE_KEY_FILE", CLOUDFRONT_PRIVATE_KEY),
        )
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(f"CloudFront signed URLs need {', '.join(_missing)} as well.")
    if STORAGE_BACKEND != "s3":
        raise ImproperlyConfigured("CLOUDFRONT_DOMAIN serves an S3 bucket: it needs STORAGE_BACKEND=s3.")
    if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", CLOUDFRONT_DOMAIN):
        raise ImproperlyConfigured(
            f"CLOUDFRONT_DOMAIN must be a host name such as d111111abcdef8.cloudfront.net, got {CLOUDFRONT_DOMAIN!r}"
        )
    if not re.fullmatch(r"[A-Z0-9]+", CLOUDFRONT_KEY_PAIR_ID):
        raise ImproperlyConfigured(
            f"CLOUDFRONT_KEY_PAIR_ID must be the ID of the public key in the key group, got {CLOUDFRONT_KEY_PAIR_ID!r}"
        )
    _check_cloudfront_key(CLOUDFRONT_PRIVATE_KEY)
# Lifetime of one signed download URL. Short, because a URL handed out before a revocation works until then.
SIGNED_URL_TTL = env.int("SIGNED_URL_TTL", default=3600)
# Lifetime of the URLs in a grant's issued batch (the manifest a researcher downloads from the grant page).
GRANT_URL_TTL = env.int("GRANT_URL_TTL", default=7 * 24 * 3600)
for _name in ("SIGNED_URL_TTL", "GRANT_URL_TTL"):
    # SigV4 refuses more than 7 days.
    if not 1 <= globals()[_name] <= 604800:
        raise ImproperlyConfigured(f"{_name} must be between 1 and 604800 seconds.")

# --- Access policy ------------------------------------------------------------------------------------
GRANT_LIFETIME_DAYS = env.int("GRANT_LIFETIME_DAYS", default=365)
GRANT_EXPIRY_WARNING_DAYS = env.int("GRANT_EXPIRY_WARNING_DAYS", default=30)
REJECTION_COOLDOWN_DAYS = env.int("REJECTION_COOLDOWN_DAYS", default=30)
# A grant approved on a provider's verified affiliation needs it asserted again by a sign-in within this many
# days (the gate refuses with `reverify` after); holders are emailed AFFILIATION_REVERIFY_WARNING_DAYS before.
AFFILIATION_MAX_AGE_DAYS = env.int("AFFILIATION_MAX_AGE_DAYS", default=180)
AFFILIATION_REVERIFY_WARNING_DAYS = 14
if not 15 <= AFFILIATION_MAX_AGE_DAYS <= 3650:
    raise ImproperlyConfigured("AFFILIATION_MAX_AGE_DAYS must be between 15 and 3650 days.")
# How long a library card a signing official issues is valid (the official may choose a shorter time).
LIBRARY_CARD_DAYS = env.int("LIBRARY_CARD_DAYS", default=365)
if not 1 <= LIBRARY_CARD_DAYS <= 3650:
    raise ImproperlyConfigured("LIBRARY_CARD_DAYS must be between 1 and 3650 days.")
# Download events of concurrent requests share one commit (access.groupcommit); PostgreSQL only.
DOWNLOAD_EVENT_GROUP_COMMIT = env.bool("DOWNLOAD_EVENT_GROUP_COMMIT", default=True)
# Anonymous downloads of open releases are added up in each web process and sent to Redis this often (seconds);
# 0 sends each before its redirect (access.services.counters).
OPEN_COUNT_FLUSH_SECONDS = env.float("OPEN_COUNT_FLUSH_SECONDS", default=1.0)
# How long a lab invitation link stays valid.
LAB_INVITATION_DAYS = env.int("LAB_INVITATION_DAYS", default=7)
# A request waiting on its applicant's answer is reminded once after this many days, then closed this many
# days after the reminder.
NEEDS_INFO_REMINDER_DAYS = env.int("NEEDS_INFO_REMINDER_DAYS", default=30)
# Accounts told of an advisory and not acknowledging it are reminded once, this many days after its email.
ADVISORY_REMINDER_DAYS = env.int("ADVISORY_REMINDER_DAYS", default=14)
if not 1 <= ADVISORY_REMINDER_DAYS <= 365:
    raise ImproperlyConfigured("ADVISORY_REMINDER_DAYS must be between 1 and 365 days.")
NEEDS_INFO_CLOSE_DAYS = env.int("NEEDS_INFO_CLOSE_DAYS", default=14)
for _name in ("NEEDS_INFO_REMINDER_DAYS", "NEEDS_INFO_CLOSE_DAYS"):
    if not 1 <= globals()[_name] <= 3650:
        raise ImproperlyConfigured(f"{_name} must be between 1 and 3650 days.")
REVIEWER_NOTIFICATIONS = env.choice("REVIEWER_NOTIFICATIONS", ["realtime", "digest", "off"], default="realtime")
# Applicants' uploads (access.services.requests): files kept per question and per request, and bytes each person
# may upload per UTC day (removed files included).
UPLOAD_MAX_FILES_PER_QUESTION = env.int("UPLOAD_MAX_FILES_PER_QUESTION", default=3)
UPLOAD_MAX_FILES_PER_REQUEST = env.int("UPLOAD_MAX_FILES_PER_REQUEST", default=10)
UPLOAD_MAX_BYTES_PER_USER_DAY = env.int("UPLOAD_MAX_BYTES_PER_USER_DAY", default=100 * 1024 * 1024)
for _name in ("UPLOAD_MAX_FILES_PER_QUESTION", "UPLOAD_MAX_FILES_PER_REQUEST", "UPLOAD_MAX_BYTES_PER_USER_DAY"):
    if not 1 <= globals()[_name] <= 2**62:
        raise ImproperlyConfigured(f"{_name} must be a positive number.")

# --- Celery -------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
# Webhook deliveries, and the sweep that sends lost ones again, have a queue of their own, consumed only by
# `celery -A portal worker --queues webhooks`: an endpoint that does not answer holds a webhook worker, never
# grant issuance, emails or reminders (the default queue, which a plain `celery -A portal worker` consumes).
# Routed by task name, so every way a delivery is sent (dispatch, retry, sweep, redelivery, beat) lands here.
CELERY_TASK_DEFAULT_QUEUE = "celery"
WEBHOOK_QUEUE = "webhooks"
CELERY_TASK_ROUTES = {
    "access.tasks.webhook_deliver": {"queue": WEBHOOK_QUEUE},
    "access.tasks.webhooks_sweep": {"queue": WEBHOOK_QUEUE},
}
# How often beat looks for approvals whose grant never appeared, and how old such an approval must be.
GRANT_RECONCILE_SECONDS = env.int("GRANT_RECONCILE_SECONDS", default=60)
GRANT_RECONCILE_AFTER_SECONDS = env.int("GRANT_RECONCILE_AFTER_SECONDS", default=30)
CELERY_BEAT_SCHEDULE = {
    "reconcile-grants": {"task": "access.tasks.grants_reconcile", "schedule": float(GRANT_RECONCILE_SECONDS)},
    "expire-grants": {"task": "access.tasks.grants_expire", "schedule": 3600.0},
    "reviewer-digest": {"task": "access.tasks.reviewer_digest", "schedule": crontab(hour=7, minute=0)},
    "needs-info-reminders": {"task": "access.tasks.needs_info_sweep", "schedule": crontab(hour=6, minute=30)},
    "reverify-reminders": {"task": "access.tasks.reverify_sweep", "schedule": crontab(hour=6, minute=45)},
    "closeout-reminders": {"task": "access.tasks.closeouts_remind", "schedule": crontab(hour=6, minute=45)},
    "advisory-reminders": {"task": "access.tasks.advisory_reminders", "schedule": crontab(hour=6, minute=50)},
    "flush-download-counts": {"task": "access.tasks.download_counts_flush", "schedule": 60.0},
    "sum-download-days": {"task": "access.tasks.download_days_rollup", "schedule": crontab(minute=5)},
    "sweep-webhooks": {"task": "access.tasks.webhooks_sweep", "schedule": 60.0},
}

# --- Email --------------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEV_MODE
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_FILE_PATH = VAR_DIR / "mail"
# access.devmail's file, which `make run` prints on its console (the workers' emails too).
DEV_MAIL_LOG = Path(env.str("DEV_MAIL_LOG", default=str(VAR_DIR / "mail.log")))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Model access portal <noreply@localhost>")

# --- Accounts (django-allauth) ------------------------------------------------------------------------
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Model access] "
ACCOUNT_ADAPTER = "access.accounts.AccountAdapter"
ACCOUNT_FORMS = {"login": "access.accounts.LoginForm", "signup": "access.accounts.SignupForm"}
AUTH_USER_MODEL = "access.User"

# --- Sign-in through OpenID Connect providers (docs/sign-in.md) ----------------------------------------------
# OIDC_PROVIDERS=demo-university,orcid, each configured by OIDC_<ID>_* variables (access.claims reads them and
# refuses what it cannot use). Every one is an app of allauth's openid_connect provider, run by the portal's own
# subclass (access.oidc), which verifies every ID token and takes each fact only from where its kind trusts it.


def _oidc_provider(provider_id: str) -> dict:
    """One provider's settings, read from OIDC_<NAME>_* (its id upper-cased, dashes as underscores)."""
    var = "OIDC_" + provider_id.upper().replace("-", "_")
    return oidc_provider_app(
        provider_id,
        name=env.str(f"{var}_NAME", default=""),
        kind=env.str(f"{var}_KIND", default=""),
        issuer=env.str(f"{var}_ISSUER", default=""),
        client_id=env.str(f"{var}_CLIENT_ID", default=""),
        client_secret=env.str(f"{var}_CLIENT_SECRET", default=""),
        scopes=env.str(f"{var}_SCOPES", default=""),
        claims=env.str(f"{var}_CLAIMS", default=""),
        algorithms=env.str(f"{var}_ALGORITHMS", default=""),
        dev_mode=DEV_MODE,
    )


OIDC_APPS = [_oidc_provider(provider_id) for provider_id in oidc_provider_ids(env.str("OIDC_PROVIDERS", default=""))]
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "provider_class": "access.oidc.PortalOpenIDConnectProvider",
        "OAUTH_PKCE_ENABLED": True,
        "APPS": OIDC_APPS,
    }
}
SOCIALACCOUNT_ADAPTER = "access.accounts.SocialAccountAdapter"
# Never sign anyone in to an existing account because a provider names its address: the adapter links only a
# verified address on a domain staff confirmed for the provider's institution, and refuses the rest.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
# A provider-verified address needs no link; an address typed at sign-up (ORCID gives none) is sent one, and
# applying needs it verified, as for every account.
SOCIALACCOUNT_EMAIL_VERIFICATION = "optional"
SOCIALACCOUNT_STORE_TOKENS = False

# --- API ----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["access.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "access.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "access.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["access.api.throttling.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        # A 992-file download with 16 connections makes ~1000 redirects plus retries in a few minutes.
        "user": env.str("THROTTLE_USER_RATE", default="6000/hour"),
        "ip": env.str("THROTTLE_IP_RATE", default="12000/hour"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # `format` is the manifest format here, not DRF content negotiation.
    "URL_FORMAT_OVERRIDE": None,
}
# Unset, the API counters live in the default cache (CACHE_URL) with allauth's; either way they are shared by the
# web processes only when the cache is Redis.
THROTTLE_CACHE_URL = env.str("THROTTLE_CACHE_URL", default="")
if THROTTLE_CACHE_URL:
    CACHES["throttle"] = env.cache_url_config(THROTTLE_CACHE_URL)
SPECTACULAR_SETTINGS = {
    "TITLE": "Model access portal API",
    "DESCRIPTION": "Gated model releases: catalog, access requests, grants and signed downloads.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # How what an applicant typed compares with what is verified (access.api.requests.MatchesOutput).
    "ENUM_NAME_OVERRIDES": {
        "VerifiedMatchEnum": ["verified", "differs"],
        "FlawReportStatusEnum": "access.models.FlawReport.Status",
        "FlawSeverityEnum": "access.models.FlawReport.Severity",
        "FlawQueueStatusEnum": ["open", "all", "received", "triaged", "accepted", "declined", "duplicate", "resolved"],
        "StatusEnum": "access.models.AccessRequest.Status",
        "DocumentKindEnum": "access.models.ReleaseDocument.Kind",
    },
}

# --- Security -----------------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG and not DEV_MODE)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG and not DEV_MODE)
# Load balancers probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG or DEV_MODE else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_HSTS_SECONDS > 0)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind a load balancer: trust its X-Forwarded-Proto, and take the client's address from the last entry of
# X-Forwarded-For (the one the balancer appended) for audit records and per-IP throttles.
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    REST_FRAMEWORK["NUM_PROXIES"] = 1
# allauth's adapter takes the address from access.http.client_ip; its own reading agrees should anything bypass it.
ALLAUTH_TRUSTED_PROXY_COUNT = 1 if BEHIND_PROXY else 0
X_FRAME_OPTIONS = "DENY"
# No inline script anywhere: every page's JavaScript is a static file.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        # Chrome applies form-action to the redirect that follows a form's POST: "Sign in with …" posts to the
        # portal, which redirects to the provider's authorization endpoint, on the issuer's origin.
        "form-action": ["'self'", *sorted({claims_origin(app["settings"]["issuer"]) for app in OIDC_APPS})],
    }
}
# Reviewer decisions and the admin ask for the password again after this long (allauth reauthentication).
ACCOUNT_REAUTHENTICATION_TIMEOUT = env.int("REAUTHENTICATION_TIMEOUT", default=900)

# --- Webhooks -----------------------------------------------------------------------------------------
# Signing secrets are derived from this key and a per-endpoint salt (none is stored); changing it changes every
# endpoint's secret.
WEBHOOK_SECRET_KEY = env.str("WEBHOOK_SECRET_KEY", default="") or SECRET_KEY
# Networks webhooks may reach although they are private, loopback or link-local (plain http allowed there too):
# for development and tests, e.g. 127.0.0.0/8.
try:
    WEBHOOK_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n.strip(), strict=False) for n in env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
    ]
except ValueError as _exc:
    raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_NETWORKS must be a list of networks: {_exc}") from None
# This network's own NAT64 prefixes (RFC 6052 network-specific prefixes, or its part of the local-use 64:ff9b:1::/48),
# which no host can detect: webhooks to an address under one are judged by the IPv4 address RFC 6052 puts there for
# the prefix's length. The well-known 64:ff9b::/96 is always read so (access.webhooks.TRANSITION_PREFIXES).
try:
    WEBHOOK_NAT64_PREFIXES = [
        ipaddress.IPv6Network(n.strip()) for n in env.list("WEBHOOK_NAT64_PREFIXES", default=[]) if n.strip()
    ]
except ValueError as _exc:
    raise ImproperlyConfigured(f"WEBHOOK_NAT64_PREFIXES must be a list of IPv6 prefixes: {_exc}") from None
for _prefix in WEBHOOK_NAT64_PREFIXES:
    if _prefix.prefixlen not in (32, 40, 48, 56, 64, 96):
        raise ImproperlyConfigured(
            f"WEBHOOK_NAT64_PREFIXES: {_prefix} is not a NAT64 prefix; RFC 6052 allows 32, 40, 48, 56, 64 or 96 bits."
        )
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=5)
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=30)
WEBHOOK_RETRY_WINDOW_SECONDS = env.int("WEBHOOK_RETRY_WINDOW_SECONDS", default=24 * 3600)
WEBHOOK_DISABLE_AFTER_SECONDS = env.int("WEBHOOK_DISABLE_AFTER_SECONDS", default=24 * 3600)
for _name in ("WEBHOOK_TIMEOUT_SECONDS", "WEBHOOK_RETRY_BASE_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 second.")

# --- Metrics and logs ---------------------------------------------------------------------------------
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it does not exist (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
LOG_FORMAT = env.choice("LOG_FORMAT", ["text", "json"], default="text")
LOG_REQUESTS = env.bool("LOG_REQUESTS", default=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "access.logs.RequestIdFilter"}},
    "formatters": {"json": {"()": "access.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            **({"formatter": "json"} if LOG_FORMAT == "json" else {}),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
# Celery would put its own handler and format on the root logger; JSON lines need the one above.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
CSRF_FAILURE_VIEW = "access.views.csrf_failure"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Server-less broker for `make run` without Redis: web and worker exchange messages through a folder.
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
    for _sub in ("queue", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
else:
    # An unacknowledged message (a worker killed mid-task; tasks are acks_late) is delivered again after this.
    _visibility = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "visibility_timeout": _visibility,
        # Look for such messages every few seconds (kombu's default scans every 100 s).
        "unacked_restore_interval": max(1, min(10, _visibility)),
        "unacked_restore_throttle": 1,
    }
