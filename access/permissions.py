from rest_framework.permissions import BasePermission, IsAuthenticated

from .selectors import is_reviewer


class IsReviewer(BasePermission):
    """Holders of the review permission (the Reviewers group), whichever credential they use."""

    message = "Only reviewers may do this."

    def has_permission(self, request, view):
        return is_reviewer(request.user)


__all__ = ["IsAuthenticated", "IsReviewer"]
