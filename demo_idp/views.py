from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render
from oauth2_provider import views as oauth2_views
from oauth2_provider.exceptions import OAuthToolkitError


class SignInForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account of Demo University.",
    }
    username = forms.EmailField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username"})
    )

    def clean_username(self):
        return self.cleaned_data["username"].strip().lower()


class SignInView(auth_views.LoginView):
    template_name = "demo_idp/sign_in.html"
    authentication_form = SignInForm
    redirect_authenticated_user = False


def home(request):
    return render(request, "demo_idp/home.html")


class AuthorizeView(oauth2_views.AuthorizationView):
    """The toolkit's authorization endpoint, which checks the request before asking anyone to sign in: an unknown
    client, a redirect URI it did not register or a request without S256 PKCE is answered at once."""

    def handle_no_permission(self):
        try:
            self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        return super().handle_no_permission()
