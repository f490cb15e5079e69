"""The demo institution: an OpenID Provider that `make run` starts beside the portal, and that the portal's tests
sign in against. A project of its own (its own process, database, keys and cookies); it shares nothing with
`portal/`.

It signs in anyone who knows its demo passwords, so it refuses to load unless DEMO_IDP_DEV=1, which only
`scripts/dev-run` and the test fixture set.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

if os.environ.get("DEMO_IDP_DEV") != "1":
    raise ImproperlyConfigured(
        "demo_idp is the demo institution of `make run`: it signs in anyone who knows its demo passwords, so it "
        "only runs in development, with DEMO_IDP_DEV=1 (scripts/dev-run sets it). Never deploy it."
    )

from demo_idp.files import private_file, random_secret, rsa_private_key_pem


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "") or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ImproperlyConfigured(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


BASE_DIR = Path(__file__).resolve().parent.parent
# Beside the portal's own files, in a directory of its own: deleting it resets the demo institution.
DATA_DIR = Path(os.environ.get("PORTAL_VAR_DIR") or BASE_DIR / "var") / "demo-idp"
PORT = _port("DEMO_IDP_PORT", 8001)
ISSUER = f"http://127.0.0.1:{PORT}/o"
PORTAL_URL = (os.environ.get("DEMO_IDP_PORTAL_URL") or "http://127.0.0.1:8000").rstrip("/")
# allauth's callback for the OpenID Connect provider whose id is "demo-university".
PORTAL_REDIRECT_PATH = "/accounts/oidc/demo-university/login/callback/"
CLIENT_ID = "portal-demo"
CLIENT_SECRET_FILE = DATA_DIR / "client_secret"
PEOPLE_FILE = DATA_DIR / "people.txt"

SECRET_KEY = private_file(DATA_DIR / "secret_key", random_secret)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "demo_idp",  # before oauth2_provider: its templates replace the toolkit's
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "demo_idp.urls"
WSGI_APPLICATION = "demo_idp.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en"
USE_I18N = False
TIME_ZONE = "UTC"
USE_TZ = True

# Browsers share cookies across the ports of one host: these must not overwrite the portal's.
SESSION_COOKIE_NAME = "demo_idp_sessionid"
CSRF_COOKIE_NAME = "demo_idp_csrftoken"
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_AGE = 60 * 60
X_FRAME_OPTIONS = "DENY"
LOGIN_URL = "demo_idp:login"
LOGIN_REDIRECT_URL = "demo_idp:home"
LOGOUT_REDIRECT_URL = "demo_idp:home"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RSA_PRIVATE_KEY": private_file(DATA_DIR / "oidc.key", rsa_private_key_pem),
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_VALIDATOR_CLASS": "demo_idp.claims.Validator",
    "SCOPES": {
        "openid": "Sign you in",
        "profile": "Your name",
        "email": "Your email address",
        "eduperson": "Your affiliations with Demo University",
    },
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 300,
    "ID_TOKEN_EXPIRE_SECONDS": 300,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 600,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # RFC 9700: S256 only, no implicit or password grants, tokens only in headers, `iss` in the authorization
    # response, tokens hashed at rest.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
