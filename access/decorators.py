"""Entry-point guards shared by web views."""

import time
from functools import wraps

from allauth.account.internal.flows.login import get_authentication_records
from allauth.core.exceptions import ReauthenticationRequired
from django.conf import settings


def recently_authenticated(request) -> bool:
    """Whether this session's user entered their password (at sign-in or on the reauthentication page) within
    ACCOUNT_REAUTHENTICATION_TIMEOUT. A sign-in through an OpenID Provider is not a password entry: powers
    (decisions, reviewer tokens, the admin site) ask for the password even after one."""
    records = [r for r in get_authentication_records(request, request.user) if r.get("method") == "password"]
    return bool(records) and time.time() - records[-1]["at"] < settings.ACCOUNT_REAUTHENTICATION_TIMEOUT


def recent_provider_sign_ins(request) -> tuple[tuple[str, str], ...]:
    """(provider, uid) of this session's sign-ins through an OpenID Provider within
    ACCOUNT_REAUTHENTICATION_TIMEOUT (what a signing official's decisions accept instead of a password)."""
    if not request.user.is_authenticated:
        return ()
    now = time.time()
    return tuple(
        (str(r.get("provider", "")), str(r.get("uid", "")))
        for r in get_authentication_records(request, request.user)
        if r.get("method") == "socialaccount" and now - r.get("at", 0) < settings.ACCOUNT_REAUTHENTICATION_TIMEOUT
    )


def recent_login_required(view):
    """Changes (POST) need a password entered within ACCOUNT_REAUTHENTICATION_TIMEOUT: a sign-in or allauth's
    reauthentication page, which this sends the user to. Reading (GET) does not."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD") and not recently_authenticated(request):
            raise ReauthenticationRequired()
        return view(request, *args, **kwargs)

    return wrapper
