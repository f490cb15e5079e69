from .selectors import is_reviewer


def portal(request):
    return {"is_reviewer": is_reviewer(getattr(request, "user", None))}
