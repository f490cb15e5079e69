import re
from datetime import UTC, datetime
from textwrap import dedent

from django import template
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext, pgettext

from .. import commands, footprint
from ..durations import age_days, ago_text, duration_text, seen_text
from ..identities import describe
from ..markdown import render_markdown
from ..oidc import configured_providers

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
def utc(value):
    """A timestamp that says its time zone: 2026-12-02 14:03 UTC."""
    if not isinstance(value, datetime):
        return ""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


_BREAK_AFTER = re.compile(r"([/_\-@])")
_BREAK_BEFORE = re.compile(r"(?<!^)(\.)")


@register.filter
def breakable(value):
    """A path, release id or email address that may break at its separators on a narrow screen (<wbr> after
    / _ - @ and before a dot) rather than anywhere."""
    text = _BREAK_AFTER.sub("\\1\x00", escape(str(value or "")))
    text = _BREAK_BEFORE.sub("\x00\\1", text)
    return mark_safe(text.replace("\x00", "<wbr>"))  # escaped above; <wbr> is ours


@register.filter
def reapply(value):
    """{{ ends|reapply }}: "You may apply again from 2026-12-07 14:03 UTC." (access.selectors.reapply_text)."""
    from ..selectors import reapply_text

    return reapply_text(value) if isinstance(value, datetime) else ""


@register.simple_tag
def colon():
    """{% colon %} after a label: ": " in English, the full-width "：" in Chinese."""
    return pgettext("after a label", ": ")


@register.filter
def markdown(value):
    """A release description (Markdown), rendered and sanitized."""
    return mark_safe(render_markdown(value or ""))  # nh3 has sanitized it


@register.simple_block_tag
def code(content, label="", id="", secret=False):
    """{% code label="…" %}command{% endcode %}: components/code.html for a command written in the template.
    The content is already rendered (and escaped) template output."""
    text = mark_safe(dedent(content).strip("\n"))  # template output, escaped as it rendered
    return render_to_string("components/code.html", {"code": text, "label": label, "id": id, "secret": secret})


@register.simple_tag(takes_context=True)
def download_commands(context, release, secret=""):
    """{% download_commands release as commands %}: the release's download commands (access/commands.py, the
    one place that writes them) for this portal's URL; `secret=` puts a token just created in place."""
    if release is None:
        return None
    return commands.download_commands(request=context["request"], release=release, secret=secret or "")


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


@register.simple_tag
def sign_in_providers():
    """The OpenID Providers configured for sign-in: [{id, name, kind, issuer}]."""
    return configured_providers()


@register.filter
def ago(value):
    """A datetime → "just now", "5 minutes ago"."""
    return ago_text(value)


@register.filter
def seen(value):
    """A datetime → "today", "yesterday", "3 days ago"."""
    return seen_text(value)


@register.filter
def fact_text(fact):
    """A verified affiliation as a sentence: "Verified by Demo University today: faculty@uni.example"."""
    return describe(fact)


@register.filter
def transfer_time(seconds):
    """A download time as people say it (access.footprint.duration_text)."""
    return footprint.duration_text(seconds)


@register.filter
def emissions(grams):
    """Grams of CO2 equivalent as tonnes or kilograms, whichever reads best."""
    if grams is None:
        return ""
    if grams >= 1_000_000:
        return gettext("%(n)s t CO2eq") % {"n": f"{grams / 1_000_000:,.1f}".rstrip("0").rstrip(".")}
    if grams >= 1000:
        return gettext("%(n)s kg CO2eq") % {"n": f"{grams / 1000:,.1f}".rstrip("0").rstrip(".")}
    return gettext("%(n)s g CO2eq") % {"n": f"{grams:,.0f}"}
