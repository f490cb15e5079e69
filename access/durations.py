"""Durations as people say them: "3 hours", "2 days" (in the language of the request)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext


def duration_text(value: timedelta | float | int | None) -> str:
    """Rounded to the unit that reads naturally: minutes under an hour, hours under two days, else days."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(seconds, 0)
    if seconds < 3600:
        n = max(round(seconds / 60), 1)
        return ngettext("%(n)d minute", "%(n)d minutes", n) % {"n": n}
    if seconds < 2 * 86400:
        n = round(seconds / 3600)
        return ngettext("%(n)d hour", "%(n)d hours", n) % {"n": n}
    n = round(seconds / 86400)
    return ngettext("%(n)d day", "%(n)d days", n) % {"n": n}


def seen_text(value: datetime | None, now: datetime | None = None) -> str:
    """When something was last seen, by calendar day (UTC): "today", "yesterday", "3 days ago"."""
    if value is None:
        return ""
    days = max(((now or timezone.now()).astimezone(UTC).date() - value.astimezone(UTC).date()).days, 0)
    if days == 0:
        return _("today")
    if days == 1:
        return _("yesterday")
    return ngettext("%(n)d day ago", "%(n)d days ago", days) % {"n": days}


def ago_text(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, for a change: "just now" under a minute, else Django's "3 hours, 2 minutes" + " ago"."""
    from django.utils.timesince import timesince

    if value is None:
        return ""
    now = now or timezone.now()
    if (now - value).total_seconds() < 60:
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(value, now)}


def age_days(value: timedelta) -> int:
    return max(int(value.total_seconds() // 86400), 0)


def wait_estimate_text(*, repo_id: str, position: int | None, typical: timedelta | None) -> str:
    """What an applicant waiting for a reviewer is told: their place in the release's queue and how long its
    requests typically take (the median of the last 90 days), whichever is known."""
    parts = []
    if position is not None:
        parts.append(_("You are number %(n)d in the queue for %(repo)s.") % {"n": position, "repo": repo_id})
    if typical is not None:
        parts.append(
            _("Requests for %(repo)s are typically decided in %(wait)s.")
            % {"repo": repo_id, "wait": duration_text(typical)}
        )
    return " ".join(parts)
