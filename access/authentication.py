from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from . import services
from .api.throttling import count_ahead
from .gate import loader


class TokenFailed(exceptions.AuthenticationFailed):
    def __init__(self, detail, code):
        super().__init__(detail, code)
        self.code = code


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` with a personal API token. Tokens in query strings are never read."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise TokenFailed(_("Malformed Authorization header: expected 'Bearer <token>'."), "invalid_token")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise TokenFailed(_("Invalid token."), "invalid_token") from None
        # The token's user, as this process last read it, names the per-user limit; counting now reads the gate's
        # version in the same round trip, and token_authenticate then trusts that read only if it is current.
        known = loader.token_guess(services.token_hash(secret))
        count_ahead(request, known.user_id if known is not None else None)
        try:
            token = services.token_authenticate(secret=secret)
        except services.TokenError as exc:
            raise TokenFailed(str(exc), exc.code) from None
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
