from .selectors import is_release_manager, is_reviewer


def portal(request):
    user = getattr(request, "user", None)
    return {"is_reviewer": is_reviewer(user), "is_release_manager": is_release_manager(user)}
