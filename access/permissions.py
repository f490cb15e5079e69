from rest_framework.permissions import BasePermission, IsAuthenticated

from .http import request_token
from .selectors import is_release_manager, is_reviewer


class IsReviewer(BasePermission):
    """Holders of the review permission (the Reviewers group), through a session or a token created with
    reviewer access. Decisions check the same again in the services, with the fresh-password rule."""

    message = "Only reviewers may do this."

    def has_permission(self, request, view):
        token = request_token(request)
        return is_reviewer(request.user) and (token is None or token.can_review)


class IsTriager(BasePermission):
    """Reviewers and release managers (who triage flaw reports), through a session or a token created with
    reviewer access. The triage service checks the same again, with the fresh-password rule."""

    message = "Only reviewers and release managers may do this."

    def has_permission(self, request, view):
        token = request_token(request)
        user = request.user
        return (is_reviewer(user) or is_release_manager(user)) and (token is None or token.can_review)


class IsReleaseManager(BasePermission):
    """Release managers (manage_release), through a session or a token created with reviewer access. The services
    check the same again, with the fresh-password rule."""

    message = "Only release managers may do this."

    def has_permission(self, request, view):
        token = request_token(request)
        return is_release_manager(request.user) and (token is None or token.can_review)


__all__ = ["IsAuthenticated", "IsReleaseManager", "IsReviewer", "IsTriager"]
