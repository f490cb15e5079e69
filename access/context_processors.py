from django.conf import settings

from .officials import official_institutions
from .selectors import is_release_manager, is_reviewer, pending_count
from .services.webhooks import can_manage_webhooks
from .site import site_name


def portal(request):
    user = getattr(request, "user", None)
    reviewer = is_reviewer(user)
    return {
        "is_reviewer": reviewer,
        # Lazy: only pages that render the navigation count, and only for reviewers.
        "pending_count": pending_count if reviewer else None,
        "is_release_manager": is_release_manager(user),
        # Lazy: one query, only on pages that render the navigation.
        "is_official": (lambda: bool(official_institutions(user))) if user is not None else False,
        "can_manage_webhooks": can_manage_webhooks(user),
        "site_name": site_name(),
        "contact_email": settings.CONTACT_EMAIL,
        "expiry_warning_days": settings.GRANT_EXPIRY_WARNING_DAYS,
    }
