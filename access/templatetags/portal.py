from django import template
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from ..durations import age_days, duration_text

register = template.Library()


@register.filter
def params(value):
    """125000000 → 125M, 175000000000 → 175B."""
    if not value:
        return "—"
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if value >= size:
            number = value / size
            return f"{number:.1f}".rstrip("0").rstrip(".") + unit
    return str(value)


@register.filter
def duration(value):
    """A timedelta or seconds → "3 hours", "2 days"."""
    return duration_text(value)


@register.filter
def waiting(created_at):
    """How long since a request was submitted, in whole days: "waiting 3 days" / "waiting under a day"."""
    days = age_days(timezone.now() - created_at)
    if days == 0:
        return gettext("waiting under a day")
    return ngettext("waiting %(n)d day", "waiting %(n)d days", days) % {"n": days}
