"""The OpenID Providers' configuration and claim maps (access.claims) and the ID token check (access.oidc), in
memory; one settings import in a process of its own shows the environment reaches them and the CSP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.exceptions import ImproperlyConfigured

from access.claims import KINDS, facts_from_claims, providers_from_env
from access.oidc import verify_id_token

BASE = {
    "OIDC_PROVIDERS": "uni",
    "OIDC_UNI_NAME": "Uni",
    "OIDC_UNI_KIND": "institution",
    "OIDC_UNI_ISSUER": "https://login.uni.example",
    "OIDC_UNI_CLIENT_ID": "portal",
    "OIDC_UNI_CLIENT_SECRET": "s3cret",
}


def apps(env: dict, *, dev_mode: bool = False) -> list[dict]:
    return providers_from_env(lambda var: env.get(var, ""), dev_mode=dev_mode)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"OIDC_UNI_KIND": "saml"}, "OIDC_UNI_KIND must be one of institution, cilogon, orcid"),
        ({"OIDC_UNI_KIND": ""}, "OIDC_UNI_KIND"),
        ({"OIDC_UNI_ISSUER": ""}, "OIDC_UNI_ISSUER must be set"),
        ({"OIDC_UNI_CLIENT_ID": ""}, "OIDC_UNI_CLIENT_ID must be set"),
        ({"OIDC_UNI_CLIENT_SECRET": ""}, "OIDC_UNI_CLIENT_SECRET (or OIDC_UNI_CLIENT_SECRET_FILE) must be set"),
        ({"OIDC_UNI_ISSUER": "http://login.uni.example"}, "must be an https URL"),
        ({"OIDC_UNI_ISSUER": "login.uni.example"}, "must be the provider's issuer URL"),
        ({"OIDC_UNI_ISSUER": "https://login.uni.example/?x=1"}, "must be the provider's issuer URL"),
        ({"OIDC_UNI_ALGORITHMS": "RS256,none"}, "none cannot sign ID tokens"),
        ({"OIDC_UNI_ALGORITHMS": "HS256"}, "HS256 cannot sign ID tokens"),
        ({"OIDC_UNI_SCOPES": "profile email"}, "must include openid"),
        ({"OIDC_UNI_CLAIMS": "affiliation=header:x"}, "OIDC_UNI_CLAIMS"),
        ({"OIDC_UNI_CLAIMS": "password=id_token:pw"}, "OIDC_UNI_CLAIMS"),
        ({"OIDC_UNI_NAME": ""}, "OIDC_UNI_NAME"),
        ({"OIDC_PROVIDERS": "Uni_Versity"}, "lower-case letters, digits and dashes"),
        ({"OIDC_PROVIDERS": "uni,uni"}, "names a provider twice"),
    ],
)
def test_a_bad_provider_setting_is_refused(change, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        apps({**BASE, **change})
    assert message in str(refused.value)


def test_plain_http_is_allowed_to_loopback_and_in_development_only():
    assert (
        apps({**BASE, "OIDC_UNI_ISSUER": "http://127.0.0.1:8001/o"})[0]["settings"]["issuer"]
        == "http://127.0.0.1:8001/o"
    )
    assert apps({**BASE, "OIDC_UNI_ISSUER": "http://localhost:8001/o"})
    assert apps({**BASE, "OIDC_UNI_ISSUER": "http://idp:8001/o"}, dev_mode=True)


def test_each_kind_brings_its_scopes_claims_and_issuer():
    (uni,) = apps(BASE)
    assert uni["settings"]["scope"] == ["openid", "profile", "email", "eduperson"]
    assert uni["settings"]["claims"]["affiliation"] == ["id_token", "eduperson_scoped_affiliation"]
    assert uni["settings"]["algorithms"] == ["RS256", "ES256", "PS256"]
    env = {
        "OIDC_PROVIDERS": "cilogon,orcid",
        "OIDC_CILOGON_KIND": "cilogon",
        "OIDC_CILOGON_CLIENT_ID": "cilogon:/client_id/1",
        "OIDC_CILOGON_CLIENT_SECRET": "x",
        "OIDC_ORCID_KIND": "orcid",
        "OIDC_ORCID_CLIENT_ID": "APP-1",
        "OIDC_ORCID_CLIENT_SECRET": "y",
    }
    cilogon, orcid = apps(env)
    assert (cilogon["name"], cilogon["settings"]["issuer"]) == ("CILogon", "https://cilogon.org")
    assert set(cilogon["settings"]["scope"]) == {"openid", "email", "profile", "org.cilogon.userinfo"}
    assert cilogon["settings"]["claims"]["idp"] == ["id_token", "idp"]
    assert (orcid["name"], orcid["settings"]["issuer"], orcid["settings"]["scope"]) == (
        "ORCID",
        "https://orcid.org",
        ["openid"],
    )
    assert "email" not in orcid["settings"]["claims"] and "affiliation" not in orcid["settings"]["claims"]


def test_claim_overrides_replace_or_remove_a_kinds_entries():
    (uni,) = apps({**BASE, "OIDC_UNI_CLAIMS": "affiliation=userinfo:eduperson_scoped_affiliation, assurance=none"})
    claims = uni["settings"]["claims"]
    assert claims["affiliation"] == ["userinfo", "eduperson_scoped_affiliation"]
    assert "assurance" not in claims and claims["email"] == ["id_token", "email"]


def test_cilogon_affiliations_are_semicolon_separated_and_its_idp_is_kept():
    claims = {fact: tuple(where) for fact, where in KINDS["cilogon"].claims.items()}
    facts = facts_from_claims(
        claims,
        {
            "sub": "http://cilogon.org/serverA/users/1",
            "idp": "https://idp.uni.example/idp/shibboleth",
            "affiliation": "faculty@uni.example;member@uni.example;Employee@Uni.Example",
            "email": "ada@uni.example",
        },
        None,
    )
    assert facts["affiliations"] == ["faculty@uni.example", "member@uni.example", "employee@uni.example"]
    assert facts["idp"] == "https://idp.uni.example/idp/shibboleth"
    assert facts["email"] == "ada@uni.example" and facts["email_verified"] is False  # CILogon asserts no email_verified


def test_a_fact_is_taken_only_from_where_the_map_trusts_it():
    claims = {"email": ("userinfo", "email"), "affiliation": ("id_token", "eduperson_scoped_affiliation")}
    id_token = {
        "sub": "1",
        "email": "evil@uni.example",
        "email_verified": True,
        "eduperson_scoped_affiliation": ["x@y"],
    }
    userinfo = {"sub": "1", "email": "ada@uni.example", "eduperson_scoped_affiliation": ["faculty@uni.example"]}
    facts = facts_from_claims(claims, id_token, userinfo)
    # The address is userinfo's, and only userinfo's email_verified could make it verified.
    assert (facts["email"], facts["email_verified"]) == ("ada@uni.example", False)
    assert facts["affiliations"] == []  # the ID token's value is not a scoped affiliation; userinfo's is not asked
    assert facts["name"] == "" and facts["orcid"] == ""


def test_orcid_ids_and_values_of_the_wrong_shape():
    claims = {fact: tuple(where) for fact, where in KINDS["orcid"].claims.items()}
    assert facts_from_claims(claims, {"sub": "0000-0002-1825-0097"}, None)["orcid"] == "0000-0002-1825-0097"
    assert facts_from_claims(claims, {"sub": "not-an-orcid"}, None)["orcid"] == ""
    facts = facts_from_claims(claims, {"sub": "0000-0002-1825-0097", "name": "Ada\nLovelace", "given_name": 7}, None)
    assert facts["name"] == "" and facts["given_name"] == ""


# --- the ID token --------------------------------------------------------------------------------------------

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER, CLIENT = "https://login.uni.example", "portal"


def jwk(key, **extra):
    return {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", **extra}


def token(claims=None, *, key=KEY, alg="RS256", kid="k1"):
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT, "sub": "s1", "iat": now, "exp": now + 60, "nonce": "n1", **(claims or {})}
    headers = {"kid": kid} if kid else {}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers=headers)


def verify(raw, *, keys=None, algorithms=("RS256",)):
    return verify_id_token(
        raw, jwks={"keys": keys or [jwk(KEY)]}, issuer=ISSUER, client_id=CLIENT, algorithms=list(algorithms), nonce="n1"
    )


def test_a_good_id_token_passes():
    assert verify(token())["sub"] == "s1"
    assert verify(token({"aud": [CLIENT, "other"], "azp": CLIENT}))["sub"] == "s1"


@pytest.mark.parametrize(
    ("raw", "keys", "why"),
    [
        (lambda: token({"aud": [CLIENT, "other"]}), None, "azp"),
        (lambda: token({"azp": "other"}), None, "azp"),
        (lambda: token({"iat": int(time.time()) + 600}), None, "iat"),
        (lambda: token({"nbf": int(time.time()) + 600}), None, "not yet valid"),
        (lambda: token({"exp": None}), None, "exp"),
        (lambda: token(kid="k2"), None, "no single RSA signing key"),
        (lambda: token(), [jwk(KEY, alg="RS512")], "is for RS512"),
        (lambda: token(), [jwk(KEY, use="enc")], "no single RSA signing key"),
        (
            lambda: token(kid=None),
            [jwk(KEY), {**jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "kid": "k2"}],
            "no single",
        ),
        (lambda: token({"sub": "s" * 192}), None, "at most 191 characters"),
        (lambda: token({"sub": 7}), None, "Subject must be a string"),
        (lambda: "not.a.jwt", None, "not a JWT"),
        (lambda: None, None, "no ID token"),
    ],
)
def test_an_id_token_that_does_not_hold_is_refused(raw, keys, why):
    with pytest.raises(OAuth2Error) as refused:
        verify(raw(), keys=keys)
    assert why in str(refused.value)


def test_an_ec_key_of_another_curve_is_refused():
    key = ec.generate_private_key(ec.SECP384R1())
    public = {**jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": "k1"}).encode()).rstrip(b"=").decode()
    with pytest.raises(OAuth2Error, match="curve"):
        verify(f"{header}.e30.c2ln", keys=[public], algorithms=["ES256"])
    with pytest.raises(OAuth2Error, match="not allowed"):
        verify(token(key=KEY, alg="RS384"), keys=[jwk(KEY)])


def test_the_environment_reaches_the_providers_and_the_csp(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    env = {**BASE, "OIDC_UNI_CLIENT_SECRET": "", "OIDC_UNI_CLIENT_SECRET_FILE": str(secret)}
    env.pop("OIDC_UNI_CLIENT_SECRET")
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "app = settings.SOCIALACCOUNT_PROVIDERS['openid_connect']['APPS'][0]; "
        "print(json.dumps([app['secret'], settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['form-action']]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={"SECRET_KEY": "x", "DJANGO_SETTINGS_MODULE": "portal.settings", "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ["from-a-file", ["'self'", "https://login.uni.example"]]
    bad = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            "SECRET_KEY": "x",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PATH": "/usr/bin:/bin",
            **BASE,
            "OIDC_UNI_KIND": "saml",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert bad.returncode != 0 and "ImproperlyConfigured" in bad.stderr and "OIDC_UNI_KIND" in bad.stderr
