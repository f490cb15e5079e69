"""What every service shares: refusals with stable codes, the acting party, and the role checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .. import inputs
from ..actors import INTERACTIVE_CREDENTIALS, Actor, command_actor, rule_actor, task_actor  # noqa: F401 (shared by the services)
from ..models import User
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


def require_role(
    actor: Actor,
    *,
    holds: Callable[[User | None], bool] | None,
    refusal: str,
    tokens: bool = True,
    trusted: tuple[str, ...] = ("task", "command", "rule"),
) -> None:
    """The one role check. The portal's own code of the `trusted` kinds passes (access.actors); anyone else must
    hold the role (`holds`; None: nobody does, only the portal's own code may) and act through a credential fit
    for powers: a page or the admin site with a password entered within REAUTHENTICATION_TIMEOUT, or, where
    `tokens`, an API token created with reviewer access (which itself needed a recent password)."""
    if actor.is_trusted and actor.kind in trusted:
        return
    if holds is None or not holds(actor.user):
        raise Forbidden(refusal)
    if actor.kind == "token" and tokens:
        if actor.token is None or not actor.token.can_review:
            raise Forbidden(
                _("This token has no reviewer access; create one with reviewer access on your tokens page."),
                "token_scope",
            )
    elif actor.kind not in INTERACTIVE_CREDENTIALS:
        raise Forbidden(refusal)
    elif not actor.reauthenticated:
        raise Forbidden(
            _("Enter your password again to do this (it was entered too long ago)."), "reauthentication_required"
        )


def require_reviewer(actor: Actor) -> None:
    """Reviewer powers: the review permission."""
    require_role(actor, holds=is_reviewer, refusal=_("Only reviewers may do this."))


def require_release_manager(actor: Actor) -> None:
    """Release-manager powers (a release's access form, license version and revisions)."""
    require_role(actor, holds=is_release_manager, refusal=_("Only release managers may do this."))


def _is_superuser(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_superuser)


def require_role_admin(actor: Actor) -> None:
    """Giving or taking reviewer and release-manager powers: an operator's management command, or a superuser
    (made only by `manage.py createsuperuser`) through the admin site or a page. Tasks and decision rules never
    change who holds powers, and no token does."""
    require_role(
        actor,
        holds=_is_superuser,
        refusal=_("Only administrators may change who reviews and manages releases."),
        tokens=False,
        trusted=("command",),
    )


def require_portal(actor: Actor, refusal: str) -> None:
    """What only the portal's own schedule does (a task or a command): no person, whatever their powers."""
    require_role(actor, holds=None, refusal=refusal, trusted=("task", "command"))


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
