"""The portal's hooks into django-allauth: the caller's address for its rate limits, the portal's name in its
emails, a sign-up that answers an existing address exactly as it answers a new one, and what a sign-in through an
OpenID Provider may do to accounts (SocialAccountAdapter)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from allauth.account.internal.userkit import filter_users_by_email
from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.providers.base import AuthProcess
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.hashers import make_password
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import emails
from .actors import Actor
from .http import actor_for, client_ip
from .identities import domains_of, under
from .models import User, VerifiedIdentity
from .selectors import holds_powers
from .services import ServiceError
from .services.accounts import supported_language
from .services.identities import identity_record, institution_for
from .site import site_name

logger = logging.getLogger(__name__)


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

    def get_login_redirect_url(self, request):
        """Reviewers land on the queue, their work; everyone else where allauth sends them (the catalog)."""
        from . import selectors

        if selectors.is_reviewer(request.user):
            return reverse("review-queue")
        return super().get_login_redirect_url(request)

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
            self.fields["remember"].label = gettext_lazy("Keep me signed in on this browser")


def refused(request, message: str, *, status: int):
    """A sign-in through a provider that goes no further: the reason, and no session."""
    return render(request, "socialaccount/refused.html", {"message": message}, status=status)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """What a sign-in through an OpenID Provider may do. An identity already linked signs in to its account; a new
    one creates an account unless its address is an existing account's: then it is linked automatically only when
    the provider asserts that address verified, on a domain staff confirmed for the provider's institution, and
    the account holds no powers; otherwise it is refused and no session is created. Linking from the account page
    attaches an identity to the signed-in account only. Every sign-in records what the provider asserted
    (access.services.identities)."""

    def list_apps(self, request, provider=None, client_id=None):
        # Providers come from OIDC_PROVIDERS only: a SocialApp row would add one nobody configured or checked.
        return [app for app in super().list_apps(request, provider=provider, client_id=client_id) if app.pk is None]

    def get_connect_redirect_url(self, request, socialaccount) -> str:
        return reverse("account-identities")

    def on_authentication_error(self, request, provider, error=None, exception=None, extra_context=None) -> None:
        logger.warning("sign-in through %s refused (%s): %s", getattr(provider, "sub_id", provider), error, exception)

    def pre_social_login(self, request, sociallogin) -> None:
        try:
            self._sign_in(request, sociallogin)
        except ServiceError as exc:  # an identity another account holds: no session, a page that says so
            raise ImmediateHttpResponse(refused(request, str(exc), status=exc.status)) from None

    def _sign_in(self, request, sociallogin) -> None:
        extra = sociallogin.account.extra_data or {}
        facts, issuer = extra.get("facts"), extra.get("issuer")
        if not facts or not issuer:
            raise ImmediateHttpResponse(refused(request, _("This sign-in could not be completed."), status=400))
        name = sociallogin.provider.name
        if sociallogin.state.get("process") == AuthProcess.CONNECT:
            raise ImmediateHttpResponse(self._link_from_account_page(request, sociallogin, facts, issuer))
        if sociallogin.is_existing:
            user = sociallogin.user
            if not user.is_active:
                raise ImmediateHttpResponse(refused(request, _("This account is disabled."), status=403))
            identity_record(
                actor=_signing_in(request, user, sociallogin),
                user=user,
                account=sociallogin.account,
                issuer=issuer,
                facts=facts,
            )
            return
        existing = filter_users_by_email(facts["email"]) if facts["email"] else []
        if not existing:
            return  # a new account: save_user records its identity
        user = existing[0]
        if len(existing) == 1 and self._may_link_automatically(user, facts, issuer):
            with transaction.atomic():
                sociallogin.connect(request, user)
                identity_record(
                    actor=_signing_in(request, user, sociallogin),
                    user=user,
                    account=sociallogin.account,
                    issuer=issuer,
                    facts=facts,
                    how="verified_email_domain",
                )
            return
        raise ImmediateHttpResponse(
            refused(
                request,
                _(
                    "An account with this address exists: sign in with your password, then link %(provider)s from "
                    "your account page."
                )
                % {"provider": name},
                status=409,
            )
        )

    def save_user(self, request, sociallogin, form=None):
        extra = sociallogin.account.extra_data
        # The browser's language, as a password sign-up saves it (AccountAdapter.save_user): emails follow it.
        sociallogin.user.language = supported_language(translation.get_language()) or settings.LANGUAGE_CODE
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            identity_record(
                actor=_signing_in(request, user, sociallogin),
                user=user,
                account=sociallogin.account,
                issuer=extra["issuer"],
                facts=extra["facts"],
                how="sign_up",
            )
        return user

    @staticmethod
    def _may_link_automatically(user: User, facts: dict, issuer: str) -> bool:
        """A verified address on a confirmed domain of the provider's own institution, the same address verified
        on the account, no powers on it (staff, superuser, reviewer, release manager), and no identity from this
        issuer on it yet (an address a university gave someone else before is not the same person)."""
        if not facts["email_verified"] or not user.is_active or holds_powers(user):
            return False
        institution = institution_for(issuer=issuer, idp=facts.get("idp") or "")
        if institution is None or not institution.is_confirmed:
            return False
        if not under(facts["email"].rpartition("@")[2], domains_of(institution)):
            return False
        if not EmailAddress.objects.filter(user=user, email__iexact=facts["email"], verified=True).exists():
            return False
        return not VerifiedIdentity.objects.filter(user=user, issuer=issuer).exists()

    def _link_from_account_page(self, request, sociallogin, facts: dict, issuer: str):
        user = request.user
        name = sociallogin.provider.name
        if not user.is_authenticated:
            return refused(
                request,
                _("Sign in first, then link %(provider)s from your account page.") % {"provider": name},
                status=403,
            )
        if sociallogin.is_existing and sociallogin.user.pk != user.pk:
            messages.error(request, _("This %(provider)s identity is linked to another account.") % {"provider": name})
            return redirect("account-identities")
        linked = not sociallogin.is_existing
        try:
            with transaction.atomic():
                if linked:
                    sociallogin.connect(request, user)
                identity_record(
                    actor=actor_for(request),
                    user=user,
                    account=sociallogin.account,
                    issuer=issuer,
                    facts=facts,
                    how="account_page",
                )
        except ServiceError as exc:
            messages.error(request, str(exc))
            return redirect("account-identities")
        if linked:
            messages.success(request, _("%(provider)s is linked to your account.") % {"provider": name})
        else:
            messages.info(request, _("Your %(provider)s identity was refreshed.") % {"provider": name})
        return redirect("account-identities")


def _signing_in(request, user: User, sociallogin) -> Actor:
    """The person signing in through a provider, before any session exists."""
    return Actor(user=user, credential=f"oidc:{sociallogin.account.provider}", ip=client_ip(request))
