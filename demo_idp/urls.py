from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from oauth2_provider import views as oauth2_views

from demo_idp import views

# Only what an OpenID Provider for one registered client needs: no client management pages, no dynamic
# registration, no device flow.
oauth2_patterns = (
    [
        path("authorize/", views.AuthorizeView.as_view(), name="authorize"),
        path("token/", oauth2_views.TokenView.as_view(), name="token"),
        re_path(
            r"^\.well-known/openid-configuration/?$",
            oauth2_views.ConnectDiscoveryInfoView.as_view(),
            name="oidc-connect-discovery-info",
        ),
        path(".well-known/jwks.json", oauth2_views.JwksInfoView.as_view(), name="jwks-info"),
        path("userinfo/", oauth2_views.UserInfoView.as_view(), name="user-info"),
    ],
    "oauth2_provider",
)

demo_patterns = (
    [
        path("", views.home, name="home"),
        path("sign-in/", views.SignInView.as_view(), name="login"),
        path("sign-out/", auth_views.LogoutView.as_view(), name="logout"),
    ],
    "demo_idp",
)

urlpatterns = [
    path("o/", include(oauth2_patterns)),
    path("", include(demo_patterns)),
]
