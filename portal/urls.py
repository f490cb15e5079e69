from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include("access.api.urls")),
    path("", include("access.urls")),
]

handler404 = "access.views.page_not_found"
handler500 = "access.views.server_error"
