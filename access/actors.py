"""Who acts: a person through one of their credentials, or the portal's own code. Recorded on every audit event,
and what every service checks (access.services.base)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .models import ApiToken, User

# The portal's own code acts with one of these credentials: a Celery task, a management command (run by an
# operator on the server) or a release's decision rule. It is a closed list: any other credential — a session,
# a token, the admin site, a relay URL, or one nobody has heard of — is checked against the person behind it.
TRUSTED_CREDENTIAL = re.compile(r"^(task|command|rule):[A-Za-z0-9_.-]{1,80}$")
# Credentials of a person at a keyboard: the portal's pages and the admin site (which asks for a recent password
# itself, portal.admin).
INTERACTIVE_CREDENTIALS = ("session", "admin")


@dataclass
class Actor:
    """Who is acting and through which credential; recorded on every audit event.

    `reauthenticated` says whether a session actor entered their password within REAUTHENTICATION_TIMEOUT;
    `token` is the API token a script acted with. An actor built without a credential is anonymous."""

    user: User | None = None
    credential: str = "anonymous"
    ip: str | None = None
    token: ApiToken | None = None
    reauthenticated: bool = False
    # (provider, uid) of the session's sign-ins through an OpenID Provider within REAUTHENTICATION_TIMEOUT: a
    # signing official's fresh sign-in with their institution counts as a recent password for their decisions.
    fresh_sign_ins: tuple[tuple[str, str], ...] = ()

    @property
    def is_trusted(self) -> bool:
        """The portal's own code (see TRUSTED_CREDENTIAL), trusted to have chosen what it does."""
        return bool(TRUSTED_CREDENTIAL.match(self.credential))

    @property
    def kind(self) -> str:
        """The credential without its detail: session, admin, token, relay, anonymous, task, command, rule."""
        return self.credential.split(":", 1)[0]


def task_actor(name: str) -> Actor:
    return Actor(credential=f"task:{name}")


def command_actor(name: str) -> Actor:
    return Actor(credential=f"command:{name}")


def rule_actor(rule: str, *, ip: str | None = None) -> Actor:
    return Actor(credential=f"rule:{rule}", ip=ip)
