"""CloudFront signed URLs for S3-backed releases. Each URL is checked here as CloudFront's edge checks a
canned-policy URL: rebuild the policy from the URL and its Expires, verify the RSA-SHA1 signature with the public
key the Key-Pair-Id names, then the expiry."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from rest_framework.test import APIClient

from tests.factories import ReleaseFactory, add_file, grant_for, token_secret

DOMAIN = "d111111abcdef8.cloudfront.net"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"
SHARD = hashlib.shake_256(b"cloudfront").digest(20_000)


def pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def private_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def cloudfront(settings, s3_storage, private_key):
    """S3Storage on nanio with a CloudFront distribution in front of it."""
    from access.storage import get_storage

    settings.S3_PREFIX = "releases"
    settings.CLOUDFRONT_DOMAIN = DOMAIN
    settings.CLOUDFRONT_KEY_PAIR_ID = KEY_PAIR_ID
    settings.CLOUDFRONT_PRIVATE_KEY = pem(private_key)
    get_storage.cache_clear()
    return get_storage()


def cloudfront_b64decode(text: str) -> bytes:
    """CloudFront's URL-safe base64: '-' for '+', '_' for '=', '~' for '/'."""
    return base64.b64decode(text.replace("-", "+").replace("_", "=").replace("~", "/"), validate=True)


def verify(url: str, public_key, *, now: float | None = None) -> bool:
    """True when CloudFront would serve `url`: a valid signature over its canned policy, not yet expired."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
    if set(params) != {"Expires", "Signature", "Key-Pair-Id"} or params["Key-Pair-Id"] != KEY_PAIR_ID:
        return False
    resource = urlunsplit(parts._replace(query=""))
    expires = int(params["Expires"])
    # The canned policy as CloudFront's documentation writes it: this key order, no whitespace.
    statement = {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
    policy = json.dumps({"Statement": [statement]}, separators=(",", ":"))
    sha1 = hashes.SHA1()  # noqa: S303 -- what CloudFront signs with
    try:
        public_key.verify(cloudfront_b64decode(params["Signature"]), policy.encode(), padding.PKCS1v15(), sha1)
    except (InvalidSignature, ValueError):
        return False
    return expires > (time.time() if now is None else now)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(changes)
    return urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in params.items())))


def test_a_signed_url_verifies_with_the_public_key(cloudfront, private_key):
    before = int(time.time())
    url = cloudfront.signed_url("facebook/opt-175b/checkpoint_last-model_part-0-shard0.pt", filename="x", ttl=600)
    after = int(time.time())
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", DOMAIN)
    # the S3 key with its prefix; the path ends in the file name, which is how tools name the saved file
    assert parts.path == "/releases/facebook/opt-175b/checkpoint_last-model_part-0-shard0.pt"
    expires = int(dict(parse_qsl(parts.query))["Expires"])
    assert before + 600 <= expires <= after + 600
    assert verify(url, private_key.public_key())
    assert not verify(url, private_key.public_key(), now=expires)


def test_without_a_ttl_urls_live_for_signed_url_ttl(cloudfront, settings, private_key):
    settings.SIGNED_URL_TTL = 1234
    started = int(time.time())
    url = cloudfront.signed_url("lab/model/config.json", filename="config.json")
    expires = int(dict(parse_qsl(urlsplit(url).query))["Expires"])
    assert started + 1234 <= expires <= int(time.time()) + 1234
    assert verify(url, private_key.public_key())


def test_a_tampered_url_fails_verification(cloudfront, private_key):
    public = private_key.public_key()
    url = cloudfront.signed_url("lab/model/shard-0.pt", filename="shard-0.pt", ttl=600)
    assert verify(url, public)
    expires = int(dict(parse_qsl(urlsplit(url).query))["Expires"])
    signature = dict(parse_qsl(urlsplit(url).query))["Signature"]
    other_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    tampered = [
        url.replace("/shard-0.pt", "/shard-1.pt"),
        url.replace("/lab/model/", "/lab/other-model/"),
        url.replace(f"https://{DOMAIN}/", "https://d222222abcdef8.cloudfront.net/"),
        with_query(url, Expires=str(expires + 1)),
        with_query(url, Expires=str(expires + 86400)),
        with_query(url, Signature=other_signature),
    ]
    for changed in tampered:
        assert not verify(changed, public), changed
    another_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert not verify(url, another_key)


def test_keys_are_percent_encoded_in_the_signed_resource(cloudfront, private_key):
    url = cloudfront.signed_url("lab/model/shard 1+2 ü?.pt", filename="shard 1+2 ü?.pt", ttl=60)
    assert urlsplit(url).path == "/releases/lab/model/" + quote("shard 1+2 ü?.pt")
    assert verify(url, private_key.public_key())


def test_a_manifest_signs_every_file_with_one_expiry(cloudfront, private_key):
    items = [(f"lab/model/shard-{n}.pt", f"shard-{n}.pt") for n in range(25)]
    urls = cloudfront.signed_urls(items, ttl=300)
    assert [urlsplit(u).path for u in urls] == [f"/releases/{key}" for key, _ in items]
    assert len({dict(parse_qsl(urlsplit(u).query))["Expires"] for u in urls}) == 1
    assert all(verify(u, private_key.public_key()) for u in urls)


@pytest.mark.django_db
def test_every_download_channel_hands_out_cloudfront_urls(cloudfront, private_key, alice, reviewer):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "config.json", b"{}")
    add_file(release, "checkpoint_last-model_part-0-shard0.pt", SHARD)
    release.refresh_from_db()
    grant_for(alice, release, reviewer)
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    public = private_key.public_key()

    manifest = client.get(f"/api/v1/models/{release.repo_id}/manifest?format=json").json()
    assert [urlsplit(f["url"]).path for f in manifest["files"]] == [
        "/releases/facebook/opt-175b/checkpoint_last-model_part-0-shard0.pt",
        "/releases/facebook/opt-175b/config.json",
    ]
    assert all(verify(f["url"], public) for f in manifest["files"])
    redirect = client.get(f"/api/v1/models/{release.repo_id}/files/config.json")
    assert redirect.status_code == 302 and verify(redirect["Location"], public)
    resolve = client.head(f"/{release.repo_id}/resolve/main/checkpoint_last-model_part-0-shard0.pt")
    assert resolve.status_code == 302 and verify(resolve["Location"], public)
    assert urlsplit(resolve["Location"]).path.endswith("/checkpoint_last-model_part-0-shard0.pt")
    # wget would save the query string in the file name: its list points at the portal's relay instead
    listing = client.get(f"/api/v1/models/{release.repo_id}/manifest?format=wget").content.decode()
    relay = listing.split()[0]
    assert "/dl/" in relay and "?" not in relay
    followed = client.get(urlsplit(relay).path)
    assert followed.status_code == 302 and verify(followed["Location"], public)


@pytest.mark.django_db
def test_uploads_and_hashing_still_go_to_the_bucket(cloudfront):
    import io

    cloudfront.save("lab/model/shard.pt", io.BytesIO(SHARD))
    assert cloudfront.exists("lab/model/shard.pt")
    assert tuple(cloudfront.hash_object("lab/model/shard.pt")) == (len(SHARD), hashlib.sha256(SHARD).hexdigest())


# --- Settings that fail loudly ------------------------------------------------------------------------------


def load_settings(tmp_path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDFRONT_")}
    base.update(DJANGO_SETTINGS_MODULE="portal.settings", STORAGE_BACKEND="s3", S3_BUCKET="models")
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.CLOUDFRONT_DOMAIN)"],
        env={**base, **env},
        capture_output=True,
        text=True,
    )


@pytest.fixture
def key_file(tmp_path, private_key):
    path = tmp_path / "cloudfront.pem"
    path.write_text(pem(private_key))
    return str(path)


def test_a_complete_configuration_loads_the_key_from_a_file(tmp_path, key_file):
    result = load_settings(
        tmp_path, CLOUDFRONT_DOMAIN=DOMAIN, CLOUDFRONT_KEY_PAIR_ID=KEY_PAIR_ID, CLOUDFRONT_PRIVATE_KEY_FILE=key_file
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == DOMAIN


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLOUDFRONT_DOMAIN": DOMAIN}, "need CLOUDFRONT_KEY_PAIR_ID, CLOUDFRONT_PRIVATE_KEY_FILE as well"),
        ({"CLOUDFRONT_DOMAIN": DOMAIN, "CLOUDFRONT_KEY_PAIR_ID": KEY_PAIR_ID}, "need CLOUDFRONT_PRIVATE_KEY_FILE"),
        ({"CLOUDFRONT_KEY_PAIR_ID": KEY_PAIR_ID, "key": True}, "need CLOUDFRONT_DOMAIN as well"),
        ({"CLOUDFRONT_DOMAIN": f"https://{DOMAIN}", "CLOUDFRONT_KEY_PAIR_ID": KEY_PAIR_ID, "key": True}, "host name"),
        ({"CLOUDFRONT_DOMAIN": DOMAIN, "CLOUDFRONT_KEY_PAIR_ID": "k2 j", "key": True}, "CLOUDFRONT_KEY_PAIR_ID must"),
        ({"CLOUDFRONT_DOMAIN": DOMAIN, "key": True, "STORAGE_BACKEND": "local"}, "needs STORAGE_BACKEND=s3"),
    ],
)
def test_an_incomplete_configuration_stops_the_process(tmp_path, key_file, env, message):
    env = dict(env)
    if env.pop("key", False):
        env["CLOUDFRONT_PRIVATE_KEY_FILE"] = key_file
    if env.get("STORAGE_BACKEND") == "local":
        env["CLOUDFRONT_KEY_PAIR_ID"] = KEY_PAIR_ID
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr[-500:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a key", "must hold an unencrypted PEM private key"),
        ("ec", "must hold an RSA key"),
        ("encrypted", "must hold an unencrypted PEM private key"),
    ],
)
def test_a_key_cloudfront_cannot_use_stops_the_process(tmp_path, private_key, content, message):
    if content == "ec":
        content = pem(ec.generate_private_key(ec.SECP256R1()))
    elif content == "encrypted":
        content = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        ).decode()
    path = tmp_path / "key.pem"
    path.write_text(content)
    result = load_settings(
        tmp_path, CLOUDFRONT_DOMAIN=DOMAIN, CLOUDFRONT_KEY_PAIR_ID=KEY_PAIR_ID, CLOUDFRONT_PRIVATE_KEY_FILE=str(path)
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-500:]
