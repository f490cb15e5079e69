"""An OpenID Provider under the tests' control: a real HTTP server in a thread, on a free loopback port.

It serves discovery, its JWKS (one RSA key it generates), an authorize endpoint that redirects straight back with
`code` and `state` (remembering the nonce, the PKCE challenge and the redirect URI it was sent), a token endpoint
that checks the client's secret, the code and the PKCE verifier and answers with an ID token built for the
current scenario, and userinfo. `provider.person` is who signs in (their claims); `provider.scenario` how the
provider misbehaves:

    good            a correct RS256 ID token
    forged          signed with another key under the same kid
    unsigned        alg "none"
    hs256           HS256, keyed with the client secret
    expired         exp and iat in the past
    wrong_issuer    iss is another issuer
    wrong_audience  aud is another client
    wrong_nonce     a nonce this sign-in did not send
    no_nonce        no nonce claim
    userinfo_sub    userinfo speaks of another subject

Each authorization request it was sent is in `provider.authorizations` (query parameters), each token request in
`provider.token_requests` (form fields, and whether the PKCE check passed)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from access.claims import providers_from_env

SCENARIOS = (
    "good",
    "forged",
    "unsigned",
    "hs256",
    "expired",
    "wrong_issuer",
    "wrong_audience",
    "wrong_nonce",
    "no_nonce",
    "userinfo_sub",
)
KID = "test-key-1"
PROVIDER = "test-university"


def person(email: str, *, sub: str | None = None, affiliations=("faculty@uni.example", "member@uni.example"), **more):
    name = more.pop("name", "Ada Lovelace")
    claims = {
        "sub": sub or hashlib.sha256(email.encode()).hexdigest()[:20],
        "email": email,
        "email_verified": True,
        "name": name,
        "given_name": name.split()[0],
        "family_name": name.split()[-1],
        "eduperson_scoped_affiliation": list(affiliations),
        "eduperson_principal_name": email,
        "eduperson_assurance": ["https://refeds.org/assurance/IAP/medium"],
    }
    claims.update(more)
    return claims


class OpenIDProvider:
    def __init__(self, *, client_id: str = "portal-test", client_secret: str | None = None):
        self.client_id = client_id
        # Long enough that PyJWT takes it as an HMAC key without complaint (the hs256 scenario signs with it).
        self.client_secret = client_secret or secrets.token_urlsafe(48)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.scenario = "good"
        self.person = person("ada.lovelace@uni.example")
        self.authorizations: list[dict] = []
        self.token_requests: list[dict] = []
        self.userinfo_requests = 0
        self._codes: dict[str, dict] = {}
        self._tokens: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/oidc"
        # A short poll, so stopping it (after every test) takes milliseconds rather than half a second.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self) -> OpenIDProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what it signs -------------------------------------------------------------------------------------

    def jwks(self) -> dict:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}

    def id_token(self, grant: dict) -> str:
        now = int(time.time())
        claims = {
            **self.person,
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": grant.get("nonce"),
        }
        scenario = self.scenario
        if scenario == "expired":
            claims.update(iat=now - 3600, exp=now - 1800)
        elif scenario == "wrong_issuer":
            claims["iss"] = "https://idp.evil.example"
        elif scenario == "wrong_audience":
            claims["aud"] = "someone-else"
        elif scenario == "wrong_nonce":
            claims["nonce"] = secrets.token_urlsafe(16)
        elif scenario == "no_nonce":
            claims.pop("nonce")
        if claims.get("nonce") is None:
            claims.pop("nonce", None)
        headers = {"kid": KID}
        if scenario == "forged":
            return jwt.encode(claims, self.other_key, algorithm="RS256", headers=headers)
        if scenario == "unsigned":
            return _unsigned(claims, headers)
        if scenario == "hs256":
            return jwt.encode(claims, self.client_secret, algorithm="HS256", headers=headers)
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)

    def userinfo(self) -> dict:
        claims = dict(self.person)
        if self.scenario == "userinfo_sub":
            claims["sub"] = "someone-else-" + claims["sub"]
        return claims

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                path = parts.path.removeprefix("/oidc")
                if path == "/.well-known/openid-configuration":
                    return self._json(200, provider.discovery())
                if path == "/jwks":
                    return self._json(200, provider.jwks())
                if path == "/authorize":
                    return self._authorize(parse_qs(parts.query))
                if path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    with provider._lock:
                        known = token in provider._tokens
                        provider.userinfo_requests += 1
                    if not known:
                        return self._json(401, {"error": "invalid_token"})
                    return self._json(200, provider.userinfo())
                return self._json(404, {"error": "not_found"})

            def _authorize(self, query):
                params = {k: v[0] for k, v in query.items()}
                provider.authorizations.append(params)
                if params.get("client_id") != provider.client_id or params.get("response_type") != "code":
                    return self._json(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(24)
                with provider._lock:
                    provider._codes[code] = params
                back = {"code": code}
                if "state" in params:
                    back["state"] = params["state"]
                self.send_response(302)
                self.send_header("Location", f"{params['redirect_uri']}?{urlencode(back)}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                if urlsplit(self.path).path.removeprefix("/oidc") != "/token":
                    return self._json(404, {"error": "not_found"})
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                else:
                    client_id, secret = form.get("client_id"), form.get("client_secret")
                with provider._lock:
                    grant = provider._codes.pop(form.get("code", ""), None)
                pkce_ok = grant is not None and _s256(form.get("code_verifier", "")) == grant.get("code_challenge")
                provider.token_requests.append({**form, "pkce_ok": pkce_ok})
                if client_id != provider.client_id or secret != provider.client_secret:
                    return self._json(401, {"error": "invalid_client"})
                if grant is None or grant.get("redirect_uri") != form.get("redirect_uri"):
                    return self._json(400, {"error": "invalid_grant"})
                if grant.get("code_challenge_method") != "S256" or not pkce_ok:
                    return self._json(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
                access_token = secrets.token_urlsafe(24)
                with provider._lock:
                    provider._tokens[access_token] = grant
                return self._json(
                    200,
                    {
                        "access_token": access_token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": provider.id_token(grant),
                    },
                )

        return Handler

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _unsigned(claims: dict, headers: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({**headers, 'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# --- driving the portal ------------------------------------------------------------------------------------


def configure(settings, idp, *, provider_id=PROVIDER, name="Test University", kind="institution", claims=""):
    """Make `idp` the portal's one provider, as OIDC_* variables would (access.claims reads them)."""
    var = "OIDC_" + provider_id.upper().replace("-", "_")
    env = {
        "OIDC_PROVIDERS": provider_id,
        f"{var}_NAME": name,
        f"{var}_KIND": kind,
        f"{var}_ISSUER": idp.issuer,
        f"{var}_CLIENT_ID": idp.client_id,
        f"{var}_CLIENT_SECRET": idp.client_secret,
        f"{var}_CLAIMS": claims,
    }
    apps = providers_from_env(lambda name: env.get(name, ""), dev_mode=False)
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {**settings.SOCIALACCOUNT_PROVIDERS["openid_connect"], "APPS": apps}
    }


def sign_in(client, idp, *, process="login", next_url=None, provider_id=PROVIDER):
    """Portal login POST → provider authorize → portal callback, with Django's test client for the portal and
    requests for the provider; the callback's response."""
    form = {"process": process, **({"next": next_url} if next_url else {})}
    started = client.post(f"/accounts/oidc/{provider_id}/login/", form)
    assert started.status_code == 302, started.content[:500]
    assert started["Location"].startswith(f"{idp.issuer}/authorize?")
    back = requests.get(started["Location"], allow_redirects=False, timeout=5)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["Location"])
    return client.get(f"{callback.path}?{callback.query}")
