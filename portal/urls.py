from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from access import oidc
from access.views import set_language

urlpatterns = [
    path("admin/", admin.site.urls),
    # allauth's OpenID Connect views at their own paths, run with the portal's verification (access.oidc), and its
    # connections page replaced by the account's identities page (unlinking goes through the portal's service).
    path("accounts/oidc/<str:provider_id>/login/", oidc.login, name="portal_oidc_login"),
    path("accounts/oidc/<str:provider_id>/login/callback/", oidc.callback, name="portal_oidc_callback"),
    path("accounts/3rdparty/", RedirectView.as_view(pattern_name="account-identities")),
    path("accounts/", include("allauth.urls")),
    # The language switcher: Django's own view, and a signed-in account remembers the choice for its emails.
    path("i18n/setlang/", set_language, name="set_language"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include("access.api.urls")),
    path("", include("access.urls")),
]

handler404 = "access.views.page_not_found"
handler500 = "access.views.server_error"
