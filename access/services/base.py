"""What every service shares: refusals with stable codes, the acting party, and the role checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .. import inputs
from ..models import ApiToken, User
from ..selectors import is_release_manager, is_reviewer
from ..text import clean_text


class ServiceError(Exception):
    """A refused operation; `code` is stable and shown to API clients, the message to people."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, code: str | None = None, *, field: str | None = None):
        super().__init__(message)
        if code:
            self.code = code
        self.field = field


class InvalidTransition(ServiceError):
    code = "invalid_transition"
    status = 409


class NotFound(ServiceError):
    """Someone else's object: it does not exist for this actor."""

    code = "not_found"
    status = 404


class Forbidden(ServiceError):
    """The actor may not do this, whichever entry point it came through."""

    code = "permission_denied"
    status = 403


# Credentials that arrive from outside. Any other credential names code of the portal's own (a task, a
# management command, the auto-approval rule), which is trusted to have chosen its actor.
EXTERNAL_CREDENTIALS = ("session", "anonymous", "relay")


@dataclass
class Actor:
    """Who is acting and through which credential; recorded on every audit event.

    `reauthenticated` says whether a session actor entered their password within REAUTHENTICATION_TIMEOUT;
    `token` is the API token a script acted with."""

    user: User | None = None
    credential: str = "system"
    ip: str | None = None
    token: ApiToken | None = None
    reauthenticated: bool = False

    @property
    def is_external(self) -> bool:
        return self.credential in EXTERNAL_CREDENTIALS or self.credential.startswith(("token:", "admin:"))


SYSTEM = Actor()
TASK = Actor(user=None, credential="task")


def command_actor(name: str) -> Actor:
    return Actor(credential=f"command:{name}")


def require_reviewer(actor: Actor) -> None:
    """Reviewer powers: the review permission, and a credential fit for them. A session must have entered
    its password recently; an API token must have been created with reviewer access (which itself needed a
    recent password); the admin site asks for a recent password on its own."""
    _require_power(actor, is_reviewer, _("Only reviewers may do this."))


def require_release_manager(actor: Actor) -> None:
    """Release-manager powers (a release's access form, license version and revisions), with the same
    credential rules as reviewer powers: a recent password, or a token created with reviewer access."""
    _require_power(actor, is_release_manager, _("Only release managers may do this."))


def _require_power(actor: Actor, holds, refusal: str) -> None:
    if not actor.is_external:
        return
    if not holds(actor.user):
        raise Forbidden(refusal)
    if actor.credential.startswith("token:"):
        if actor.token is None or not actor.token.can_review:
            raise Forbidden(
                _("This token has no reviewer access; create one with reviewer access on your tokens page."),
                "token_scope",
            )
    elif not actor.reauthenticated:
        raise Forbidden(
            _("Enter your password again to do this (it was entered too long ago)."), "reauthentication_required"
        )


def require_license_version(release, version) -> None:
    """The version a holder accepts must be the one the release is on now (the one they were shown)."""
    current = release.license
    if current is None or str(version) != current.version:
        raise ServiceError(
            _("Version %(v)s is not the license of %(repo)s; its current version is %(current)s.")
            % {"v": version, "repo": release.repo_id, "current": current.version if current else "-"},
            "license_version",
            field="version",
        )


def require_user(actor: Actor) -> User:
    if actor.user is None or not actor.user.is_authenticated or not actor.user.is_active:
        raise Forbidden(_("Sign in first."), "not_authenticated")
    return actor.user


def clean(value: str, *, field: str, multiline: bool, name: bool = False, max_length: int = 5000) -> str:
    """The free-text rule of access.text, as a service refusal naming the field."""
    try:
        value = clean_text(value or "", multiline=multiline, name=name)
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), "invalid_text", field=field) from None
    if len(value) > max_length:
        raise ServiceError(_("Keep it under %(n)d characters.") % {"n": max_length}, "too_long", field=field)
    return value


def number(value, *, field: str, low: int, high: int) -> int:
    """The number rule of access.inputs (a whole number within its bounds), as a service refusal naming the
    field: what the admin site, a form or a script sends is held to the same bounds."""
    try:
        return inputs.integer(value, low=low, high=high, name=field)
    except inputs.InputError as exc:
        raise ServiceError(str(exc), exc.code, field=field) from None


def on_calendar(value: datetime, *, field: str) -> datetime:
    """A moment whose day is on the portal's calendar (access.inputs: 1900-01-01 to 2999-12-31)."""
    try:
        inputs.day(value.date(), name=field)
    except inputs.InputError as exc:
        raise ServiceError(str(exc), exc.code, field=field) from None
    return value
