"""The demo institution (demo_idp/): a real OpenID Provider that `make run` starts beside the portal. It signs a
person in with the authorization code flow and PKCE (S256), asserts who they are in an ID token signed with RS256,
and refuses to run outside development."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.support.demo_idp import DemoIdP
from tests.support.processes import ROOT

pytestmark = pytest.mark.slow

PORTAL = "http://127.0.0.1:8765"
ADA = "ada.lovelace@uni.example"
SCOPES = "openid profile email eduperson"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    server = DemoIdP(PORTAL, tmp_path_factory.mktemp("demo-idp")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def discovery(idp):
    response = requests.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    return response.json()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(idp, discovery, **params) -> str:
    query = {
        "response_type": "code",
        "client_id": idp.client_id,
        "redirect_uri": idp.redirect_uri,
        "scope": SCOPES,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    query.update(params)
    return discovery["authorization_endpoint"] + "?" + urlencode({k: v for k, v in query.items() if v is not None})


def redirect_query(idp, response) -> dict:
    """The parameters the provider sends back to the portal's callback, which is never requested here."""
    assert response.status_code == 302, response.text[:500]
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == idp.redirect_uri
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def exchange(idp, discovery, code, verifier, *, secret=None):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": idp.redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(
        discovery["token_endpoint"], data=data, auth=(idp.client_id, secret or idp.client_secret), timeout=10
    )


def signed_in_session(idp, discovery):
    """A browser session signed in at the provider, and the response of its first authorization request."""
    session = requests.Session()
    verifier, challenge = pkce_pair()
    url = authorization_url(idp, discovery, code_challenge=challenge, code_challenge_method="S256")
    return session, idp.sign_in(session, url, ADA, idp.people[ADA]), verifier


def new_code(idp, discovery, session) -> tuple[str, str]:
    """A further authorization code for a signed-in session (no consent screen), and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    url = authorization_url(idp, discovery, code_challenge=challenge, code_challenge_method="S256")
    response = session.get(url, allow_redirects=False)
    return redirect_query(idp, response)["code"], verifier


def test_discovery_lists_the_endpoints_rs256_and_s256_only(idp, discovery):
    assert discovery["issuer"] == idp.issuer
    for name, path in [
        ("authorization_endpoint", "/o/authorize/"),
        ("token_endpoint", "/o/token/"),
        ("userinfo_endpoint", "/o/userinfo/"),
        ("jwks_uri", "/o/.well-known/jwks.json"),
    ]:
        assert discovery[name] == idp.url + path
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["response_types_supported"] == ["code"]
    assert set(SCOPES.split()) <= set(discovery["scopes_supported"])
    assert {"eduperson_scoped_affiliation", "eduperson_assurance", "email_verified"} <= set(
        discovery["claims_supported"]
    )
    jwks = requests.get(discovery["jwks_uri"], timeout=10).json()
    assert [(key["kty"], key["alg"], key["use"]) for key in jwks["keys"]] == [("RSA", "RS256", "sig")]
    assert "d" not in jwks["keys"][0]  # the public half only
    assert (idp.data_dir / "oidc.key").stat().st_mode & 0o777 == 0o600
    assert (idp.data_dir / "client_secret").stat().st_mode & 0o777 == 0o600
    assert (idp.data_dir / "people.txt").stat().st_mode & 0o777 == 0o600


def test_the_faculty_member_signs_in_with_a_code_and_pkce_and_gets_a_signed_id_token(idp, discovery):
    session = requests.Session()
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    url = authorization_url(
        idp, discovery, state=state, nonce=nonce, code_challenge=challenge, code_challenge_method="S256"
    )
    back = redirect_query(idp, idp.sign_in(session, url, ADA, idp.people[ADA]))
    assert back["state"] == state and back["iss"] == idp.issuer
    assert {"demo_idp_sessionid", "demo_idp_csrftoken"} <= set(session.cookies.keys())
    assert not {"sessionid", "csrftoken"} & set(session.cookies.keys())  # the portal's stay the portal's

    response = exchange(idp, discovery, back["code"], verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] <= 300

    keys = jwt.PyJWKSet.from_dict(requests.get(discovery["jwks_uri"], timeout=10).json())
    key = keys[jwt.get_unverified_header(tokens["id_token"])["kid"]]
    claims = jwt.decode(tokens["id_token"], key.key, algorithms=["RS256"], audience=idp.client_id, issuer=idp.issuer)
    assert claims["nonce"] == nonce
    assert claims["exp"] - claims["iat"] <= 300
    person = {k: v for k, v in claims.items() if k not in {"aud", "iss", "iat", "exp", "nonce", "jti", "auth_time"}}
    sub = person.pop("sub")
    assert len(sub) == 32 and not sub.isdigit()  # opaque, not the database id
    assert person == {
        "at_hash": person["at_hash"],
        "email": ADA,
        "email_verified": True,
        "name": "Ada Lovelace",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "eduperson_principal_name": ADA,
        "eduperson_scoped_affiliation": ["faculty@uni.example", "member@uni.example", "employee@uni.example"],
        "eduperson_assurance": ["https://refeds.org/assurance/IAP/medium"],
    }

    userinfo = requests.get(
        discovery["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert userinfo.status_code == 200
    del person["at_hash"]
    assert userinfo.json() == {"sub": sub, **person}

    # The same person next time: the same sub.
    code, verifier = new_code(idp, discovery, session)
    again = exchange(idp, discovery, code, verifier).json()
    assert jwt.decode(again["id_token"], key.key, algorithms=["RS256"], audience=idp.client_id)["sub"] == sub


def test_the_token_endpoint_refuses_a_code_without_its_pkce_verifier(idp, discovery):
    session, _, _ = signed_in_session(idp, discovery)
    code, _ = new_code(idp, discovery, session)
    missing = exchange(idp, discovery, code, None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    code, _ = new_code(idp, discovery, session)
    wrong = exchange(idp, discovery, code, pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "id_token" not in missing.text + wrong.text


@pytest.mark.parametrize("pkce", [{}, {"code_challenge": "x" * 43, "code_challenge_method": "plain"}])
def test_an_authorization_request_without_s256_pkce_gets_no_code(idp, discovery, pkce):
    session, _, _ = signed_in_session(idp, discovery)
    back = redirect_query(idp, session.get(authorization_url(idp, discovery, **pkce), allow_redirects=False))
    assert back["error"] == "invalid_request" and "code" not in back


def test_a_second_start_keeps_the_secret_and_people_and_follows_a_new_portal_url(demo_idp):
    idp = demo_idp("http://127.0.0.1:8100")
    secret, people = idp.client_secret, idp.people
    idp.portal_url = "http://portal.example:9000"
    idp.setup()  # what the next start runs first
    assert (idp.client_secret, idp.people) == (secret, people)

    def authorize(redirect_uri):
        params = {
            "response_type": "code",
            "client_id": idp.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        }
        return requests.get(f"{idp.issuer}/authorize/?{urlencode(params)}", allow_redirects=False, timeout=10)

    # The new callback leads to the sign-in page; the old one is refused before anyone signs in.
    assert urlsplit(authorize(idp.redirect_uri).headers["Location"]).path == "/sign-in/"
    old = authorize("http://127.0.0.1:8100/accounts/oidc/demo-university/login/callback/")
    assert old.status_code == 400 and "Location" not in old.headers

    # The stored client secret is still the one in the file.
    def token_error(client_secret):
        data = {"grant_type": "authorization_code", "code": "unknown", "redirect_uri": idp.redirect_uri}
        answer = requests.post(f"{idp.issuer}/token/", data=data, auth=(idp.client_id, client_secret), timeout=10)
        return answer.json()["error"]

    assert token_error(secret) == "invalid_grant"
    assert token_error(secret + "x") == "invalid_client"


def test_it_refuses_to_load_its_settings_outside_development(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DEMO_IDP_DEV"}
    env.update(DJANGO_SETTINGS_MODULE="demo_idp.settings", PORTAL_VAR_DIR=str(tmp_path))
    for value in (None, "0", "true"):
        if value is not None:
            env["DEMO_IDP_DEV"] = value
        result = subprocess.run(
            [sys.executable, "-c", "import demo_idp.wsgi"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert result.returncode != 0
        assert "ImproperlyConfigured: demo_idp is the demo institution of `make run`" in result.stderr
        assert "DEMO_IDP_DEV=1" in result.stderr
    assert not (tmp_path / "demo-idp").exists()  # refused before it made a key or a secret
    script = subprocess.run(
        [str(ROOT / "scripts" / "demo-idp")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert script.returncode == 1 and "DEMO_IDP_DEV=1" in script.stderr
