"""Sign-in through OpenID Connect providers: allauth's `openid_connect` provider, with what it leaves open closed.

allauth skips the ID token's signature when the token came from the token endpoint, accepts whatever algorithm
the token's header names, sends no nonce, and prefers userinfo to the ID token for every claim. Here, for every
provider in OIDC_PROVIDERS (access.claims):

- every authorization request carries PKCE (S256) and a fresh nonce, both kept with allauth's state in the session;
  request parameters cannot add scopes or authorization parameters;
- the discovery document must name the configured issuer;
- the ID token's signature is always checked against the issuer's JWKS, with the provider's algorithm allow-list
  (asymmetric only: never `none`, never HMAC); the header's `alg` must be in the list and match the key's `alg` and
  type; `iss`, `aud` (and `azp` when present or when there are several audiences), `exp`, `iat` and `nbf` are
  checked with a minute's leeway, and the nonce must be the one this browser's session sent;
- userinfo is fetched only when the claim map takes a fact from it, and used only when its `sub` is the ID
  token's;
- each fact is taken only from where the claim map says (access.claims.facts_from_claims).

The provider class is registered through SOCIALACCOUNT_PROVIDERS["openid_connect"]["provider_class"]; allauth's
login and callback views build allauth's own adapter, so the portal's URLs (the same paths, listed first in
portal/urls.py) run these views instead. What the portal does with the facts (accounts, links, verified
identities) is access.accounts.SocialAccountAdapter's."""

from __future__ import annotations

import hmac
import json
import secrets
from urllib.parse import urlsplit

import jwt
from allauth.account.models import EmailAddress
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.base import AuthProcess, ProviderAccount
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.utils import generate_code_challenge
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.conf import settings
from django.http import Http404
from requests import RequestException

from . import claims as claim_maps

LEEWAY_SECONDS = 60
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": ("Ed25519", "Ed448")}


def configured_providers() -> list[dict]:
    """The providers people may sign in with: [{id, name, kind, issuer}], in OIDC_PROVIDERS order."""
    apps = settings.SOCIALACCOUNT_PROVIDERS.get("openid_connect", {}).get("APPS", [])
    return [
        {"id": a["provider_id"], "name": a["name"], "kind": a["settings"]["kind"], "issuer": a["settings"]["issuer"]}
        for a in apps
    ]


def provider_name(provider_id: str) -> str:
    return next((p["name"] for p in configured_providers() if p["id"] == provider_id), provider_id)


# --- the ID token -------------------------------------------------------------------------------------


def verify_id_token(token, *, jwks: dict, issuer: str, client_id: str, algorithms: list[str], nonce: str) -> dict:
    """The claims of an ID token this provider signed for this client and this sign-in; OAuth2Error otherwise."""
    if not isinstance(token, str) or not token:
        raise OAuth2Error("The token response has no ID token.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise OAuth2Error(f"The ID token is not a JWT: {exc}") from None
    alg = header.get("alg")
    if alg not in algorithms or alg not in claim_maps.SIGNING_ALGORITHMS:
        raise OAuth2Error(f"The ID token is signed with {alg!r}, which is not allowed for this provider.")
    key = _signing_key(jwks, header.get("kid"), alg)
    try:
        data = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise OAuth2Error(f"The ID token was refused: {exc}") from None
    audiences = [data["aud"]] if isinstance(data["aud"], str) else list(data["aud"])
    azp = data.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise OAuth2Error("The ID token was issued to another party (azp).")
    sent = data.get("nonce")
    if not isinstance(sent, str) or not nonce or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise OAuth2Error("The ID token does not carry the nonce this sign-in sent.")
    # allauth keeps the subject as the social account's uid, at most 191 characters.
    if not isinstance(data["sub"], str) or not 0 < len(data["sub"]) <= 191:
        raise OAuth2Error("The ID token's subject is not a string of at most 191 characters.")
    return data


def _signing_key(jwks, kid, alg: str):
    """The one key of the issuer's JWKS that may have signed a token with this header."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise OAuth2Error("The provider's JWKS has no keys.")
    kty = KEY_TYPES[alg[:2]]
    candidates = [
        k
        for k in keys
        if isinstance(k, dict)
        and k.get("kty") == kty
        and k.get("use", "sig") == "sig"
        and (kid is None or k.get("kid") == kid)
    ]
    if len(candidates) != 1:
        raise OAuth2Error(f"The provider's JWKS has no single {kty} signing key for kid {kid!r}.")
    jwk = candidates[0]
    if "alg" in jwk and jwk["alg"] != alg:
        raise OAuth2Error(f"The key {kid!r} is for {jwk['alg']}, not {alg}.")
    curve = CURVES.get(alg)
    if curve is not None and jwk.get("crv") not in (curve if isinstance(curve, tuple) else (curve,)):
        raise OAuth2Error(f"The key {kid!r} is not on the curve {alg} needs.")
    try:
        return jwt.get_algorithm_by_name(alg).from_jwk(json.dumps(jwk))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise OAuth2Error(f"The provider's key {kid!r} cannot be read: {exc}") from None


def _get_json(url: str, headers: dict | None = None):
    with get_adapter().get_requests_session() as session:
        response = session.get(url, headers=headers)
        response.raise_for_status()
        return response.json()


# --- allauth: adapter and provider ----------------------------------------------------------------------


class PortalOpenIDConnectAdapter(OpenIDConnectOAuth2Adapter):
    """allauth's adapter, with the discovery document checked and the ID token always verified."""

    # The callback view hands over the state it took from the session (the nonce is there).
    state: dict | None = None

    @property
    def openid_config(self) -> dict:
        if not hasattr(self, "_openid_config"):
            app = self.get_provider().app
            issuer = app.settings["issuer"]
            config = _get_json(app.settings["server_url"] + "/.well-known/openid-configuration")
            if not isinstance(config, dict) or config.get("issuer") != issuer:
                raise OAuth2Error("The provider's discovery document names another issuer.")
            secure = urlsplit(issuer).scheme == "https"
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
                value = config.get(name)
                if value is None and name == "userinfo_endpoint":
                    continue
                scheme = urlsplit(value).scheme if isinstance(value, str) else ""
                if scheme not in (("https",) if secure else ("https", "http")):
                    raise OAuth2Error(f"The provider's discovery document has no usable {name}.")
            self._openid_config = config
        return self._openid_config

    def complete_login(self, request, app, token, **kwargs):
        response = kwargs.get("response") or {}
        nonce = (self.state or {}).get("nonce") or ""
        id_token = verify_id_token(
            response.get("id_token"),
            jwks=_get_json(self.openid_config["jwks_uri"]),
            issuer=app.settings["issuer"],
            client_id=app.client_id,
            algorithms=app.settings["algorithms"],
            nonce=nonce,
        )
        claim_map = {fact: tuple(where) for fact, where in app.settings["claims"].items()}
        userinfo = None
        if claim_maps.uses_userinfo(claim_map):
            if not self.openid_config.get("userinfo_endpoint"):
                raise OAuth2Error("The claim map takes facts from userinfo, which this provider does not offer.")
            userinfo = _get_json(self.profile_url, headers={"Authorization": f"Bearer {token.token}"})
            if not isinstance(userinfo, dict) or userinfo.get("sub") != id_token["sub"]:
                raise OAuth2Error("The userinfo response is about another subject than the ID token.")
        data = {
            "issuer": app.settings["issuer"],
            "facts": claim_maps.facts_from_claims(claim_map, id_token, userinfo),
        }
        return self.get_provider().sociallogin_from_response(request, data)


class PortalProviderAccount(ProviderAccount):
    def to_str(self) -> str:
        facts = (self.account.extra_data or {}).get("facts") or {}
        return facts.get("email") or facts.get("orcid") or facts.get("principal_name") or self.account.uid


class PortalOpenIDConnectProvider(OpenIDConnectProvider):
    """One configured provider. Its social account's `extra_data` is {"issuer", "facts"}: what the verified claims
    state, as access.claims extracts them."""

    # allauth includes the URLs of a provider's package: allauth's own openid_connect ones (the same paths as the
    # portal's, which come first).
    package = "allauth.socialaccount.providers.openid_connect"
    account_class = PortalProviderAccount
    oauth2_adapter_class = PortalOpenIDConnectAdapter
    # Signing in by posting an ID token (allauth's headless API) is not offered.
    supports_token_authentication = False

    def get_oauth2_adapter(self, request):
        return PortalOpenIDConnectAdapter(request, self.app.provider_id)

    def get_pkce_params(self) -> dict:
        return generate_code_challenge()  # S256, for every provider whatever its app settings say

    def get_scope_from_request(self, request):
        return self.get_scope()

    def get_auth_params_from_request(self, request, action):
        return self.get_auth_params()

    def redirect(self, request, process, next_url=None, data=None, **kwargs):
        if process not in (AuthProcess.LOGIN, AuthProcess.CONNECT):
            return render_authentication_error(request, self)
        nonce = secrets.token_urlsafe(32)
        auth_params = {**(kwargs.pop("auth_params", None) or self.get_auth_params()), "nonce": nonce}
        try:
            return super().redirect(request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs)
        except (RequestException, OAuth2Error, ValueError) as exc:
            return render_authentication_error(request, self, exception=exc)

    def verify_token(self, request, token):
        raise get_adapter().validation_error("invalid_token")

    def extract_uid(self, data) -> str:
        return data["facts"]["subject"]

    def extract_extra_data(self, data) -> dict:
        return {"issuer": data["issuer"], "facts": data["facts"]}

    def extract_common_fields(self, data) -> dict:
        facts = data["facts"]
        return {
            "email": facts["email"] or None,
            "email_verified": facts["email_verified"],
            "name": facts["name"],
            "first_name": facts["given_name"],
            "last_name": facts["family_name"],
        }

    def extract_email_addresses(self, data) -> list:
        facts = data["facts"]
        if not facts["email"]:
            return []
        return [EmailAddress(email=facts["email"], verified=facts["email_verified"], primary=True)]


# --- views ------------------------------------------------------------------------------------------------


class PortalCallbackView(OAuth2CallbackView):
    # allauth's callback takes the state from the session here and gives the adapter none of it; the nonce the
    # ID token must carry is in it.
    def _get_state(self, request, provider):
        state, response = super()._get_state(request, provider)
        self.adapter.state = state
        return state, response


def login(request, provider_id):
    try:
        return OAuth2LoginView.adapter_view(PortalOpenIDConnectAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None


def callback(request, provider_id):
    try:
        return PortalCallbackView.adapter_view(PortalOpenIDConnectAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None
