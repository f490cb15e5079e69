"""The portal's hooks into django-allauth: the caller's address for its rate limits, the portal's name in its
emails, and a sign-up that answers an existing address exactly as it answers a new one."""

from __future__ import annotations

from types import SimpleNamespace

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import PermissionDenied
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from . import emails
from .http import client_ip
from .services.accounts import supported_language
from .site import site_name


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request) -> str:
        # The address the API throttle and the audit log use, so the sign-in, sign-up and password-reset limits
        # cannot be escaped (or a victim's spent) by a forged X-Forwarded-For.
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied
        return ip

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # Without django.contrib.sites allauth would name the portal by the request's host ("127.0.0.1:8000").
        site = SimpleNamespace(name=site_name(), domain=settings.SITE_URL)
        # In the language of the account it goes to (a sign-up's is the browser's, saved with the account).
        with translation.override(emails.language_of(email)):
            super().send_mail(template_prefix, email, {"current_site": site, **context})

    def save_user(self, request, user, form, commit=True):
        user.language = supported_language(translation.get_language()) or settings.LANGUAGE_CODE
        return super().save_user(request, user, form, commit=commit)


class SignupForm(AllauthSignupForm):
    def try_save(self, request):
        if self.account_already_exists:
            # A new account costs a password hash (hundreds of milliseconds with PBKDF2). Without one here an
            # existing address answers that much sooner, which tells anyone which addresses have accounts.
            make_password(self.cleaned_data["password1"])
        return super().try_save(request)


class LoginForm(AllauthLoginForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "remember" in self.fields:
            self.fields["remember"].label = _("Keep me signed in on this browser")
