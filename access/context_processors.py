from .selectors import is_release_manager, is_reviewer
from .services.webhooks import can_manage_webhooks


def portal(request):
    user = getattr(request, "user", None)
    return {
        "is_reviewer": is_reviewer(user),
        "is_release_manager": is_release_manager(user),
        "can_manage_webhooks": can_manage_webhooks(user),
    }
