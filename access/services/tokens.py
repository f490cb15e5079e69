"""Personal API tokens: the secret is shown once and only its SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import selectors
from ..audit import audit
from ..models import ApiToken
from .base import Actor, NotFound, ServiceError, clean, on_calendar, require_reviewer, require_user


class TokenError(ServiceError):
    status = 401


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(
    *, actor: Actor, name: str, expires_at: datetime | None = None, review: bool = False
) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and only its SHA-256 is stored. A token with reviewer access
    can decide requests and revoke grants through the API, so creating one needs reviewer powers right now
    (for a session: a recently entered password)."""
    user = require_user(actor)
    name = clean(name, field="name", multiline=False, max_length=100)
    if not name:
        raise ServiceError(_("Give the token a name."), "invalid", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(_("The expiry date must be in the future."), "invalid_expiry", field="expires_at")
    if expires_at is not None:
        on_calendar(expires_at, field="expires_at")
    if review:
        require_reviewer(actor)
    secret = ApiToken.PREFIX + secrets.token_urlsafe(32)
    scope = ApiToken.Scope.REVIEW if review else ApiToken.Scope.DOWNLOAD
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secret[:10],
            secret_hash=token_hash(secret),
            expires_at=expires_at,
            scope=scope,
        )
        audit(
            actor=actor,
            action="token.created",
            target=token,
            data={"name": name, "prefix": token.prefix, "scope": scope},
        )
    return token, secret


def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """The owner revokes their token; so may the admin site and commands (trusted actors)."""
    if not actor.is_trusted and actor.kind != "admin" and (actor.user is None or actor.user.pk != token.user_id):
        raise NotFound(_("Not found."))
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at", "updated_at"])
            audit(actor=actor, action="token.revoked", target=token, data={"prefix": token.prefix})
    return token


def token_authenticate(*, secret: str) -> ApiToken:
    """The usable token for a secret. Lookup is by SHA-256, so comparing secrets leaks no timing."""
    if not secret.startswith(ApiToken.PREFIX) or len(secret) > 200:
        raise TokenError(_("Invalid token."), "invalid_token")
    token = selectors.token_lookup(secret_hash=token_hash(secret))
    if token is None or not token.user.is_active:
        raise TokenError(_("Invalid token."), "invalid_token")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenError(_("This token was revoked; create a new one on your tokens page."), "token_revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenError(_("This token has expired; create a new one on your tokens page."), "token_expired")
    # One write a minute at most: a 992-file download should not write the token row 992 times.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
