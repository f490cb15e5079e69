from django.contrib import admin
from django.urls import include, path

from access.views import set_language

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    # The language switcher: Django's own view, and a signed-in account remembers the choice for its emails.
    path("i18n/setlang/", set_language, name="set_language"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include("access.api.urls")),
    path("", include("access.urls")),
]

handler404 = "access.views.page_not_found"
handler500 = "access.views.server_error"
