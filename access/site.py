"""The portal's name, as pages and emails say it."""

from django.conf import settings
from django.utils.translation import gettext as _


def site_name() -> str:
    """SITE_NAME when set, else the default name in the current language."""
    return settings.SITE_NAME or _("Model access portal")
