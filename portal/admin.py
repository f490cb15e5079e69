from allauth.account.decorators import secure_admin_login
from django.contrib import admin

from access.decorators import recent_login_required


class PortalAdminSite(admin.AdminSite):
    """The Django admin behind the portal's own sign-in (rate limits, verified email), asking for the password
    again before any change when the last sign-in is not recent."""

    site_header = "Model access portal administration"

    def admin_view(self, view, cacheable=False):
        return super().admin_view(recent_login_required(view), cacheable)

    def login(self, request, extra_context=None):
        return secure_admin_login(super().login)(request, extra_context)
