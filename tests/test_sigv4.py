"""access.sigv4.Presigner: byte-identical to boto3, and accepted by a real SigV4-checking server (nanio)."""

from __future__ import annotations

import datetime
import functools
import time
import urllib.error
import urllib.request
from unittest import mock
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config

from access.sigv4 import Presigner, UnsupportedRequest
from tests.support.nanio import start_nanio, stop_nanio

ACCESS_KEY = "AKIAEXAMPLE/+="  # characters that must be percent-encoded in X-Amz-Credential
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = datetime.datetime(2024, 2, 29, 23, 59, 59)  # naive UTC, like botocore's own clock

KEYS = [
    "facebook/opt-175b/checkpoint_last-model_part-0-shard0.pt",
    "with space/and  two  spaces.bin",
    "plus+equals=amp&.bin",
    "unicode/é/中文/😀.safetensors",
    "reserved/~()!*';,@$.bin",
    "percent/100%/%2F/%.bin",
    "hash#and?question.bin",
    "/leading-slash",
    "trailing-slash/",
    "double//slash",
    "//x//",
    "dots/../and/./dot",
    ".",
    "tab\tand\nnewline",
    "a" * 1024,
    "nested/" * 100 + "deep.bin",
]
DISPOSITIONS = [
    None,
    "",
    "attachment",
    'attachment; filename="model shard (1).pt"',
    "attachment; filename*=UTF-8''" + quote("modèle 中文 😀.pt", safe=""),
    'inline; filename="quote\\"inside.pt"; filename*=UTF-8\'\'%E2%82%AC.pt',
]
# (endpoint_url, region, addressing_style): custom endpoints and AWS, several regions and partitions.
CONFIGS = [
    (endpoint, region, style)
    for style in ("auto", "path", "virtual")
    for endpoint, region in [
        ("http://127.0.0.1:9000", "us-east-1"),
        ("http://127.0.0.1:9000", "eu-west-1"),
        ("http://minio.local:9000", "garage"),
        ("https://s3.example.com/storage/", "us-east-1"),
        (None, "us-east-1"),
        (None, "eu-west-1"),
        (None, "ap-southeast-2"),
        (None, "cn-north-1"),
        (None, "us-gov-west-1"),
    ]
]
BUCKETS = ["models", "my.dotted.bucket", "UpperCase", "ab", "under_score", "192.168.1.1", "-dash", "x" * 63, "y" * 64]


@functools.cache
def boto3_client(endpoint_url: str | None, region: str, style: str, session_token: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=session_token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )


def boto3_url(client, bucket: str, key: str, expires_in: int, disposition: str | None = None) -> str:
    params = {"Bucket": bucket, "Key": key}
    if disposition is not None:
        params["ResponseContentDisposition"] = disposition
    return client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)


def frozen_botocore_clock(now: datetime.datetime):
    # botocore's SigV4Auth.add_auth calls get_current_datetime(), imported by name into botocore.auth (the
    # botocore.auth.datetime module is not consulted for presigning, so patching it would not freeze anything).
    return mock.patch("botocore.auth.get_current_datetime", return_value=now)


def presigner(endpoint_url: str | None, region: str, style: str, **kwargs) -> Presigner:
    return Presigner(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=region,
        endpoint_url=endpoint_url,
        addressing_style=style,
        **kwargs,
    )


def presign_with_fallback(signer: Presigner, client, *, bucket: str, key: str, expires_in: int, **extra) -> str:
    """The caller contract: use the fast path only when it is exact, otherwise boto3."""
    if signer.supports(extra_params=extra):
        try:
            return signer.presign_get(
                bucket=bucket,
                key=key,
                expires_in=expires_in,
                response_content_disposition=extra.get("ResponseContentDisposition"),
            )
        except UnsupportedRequest:
            pass
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key, **extra}, ExpiresIn=expires_in
    )


# -- byte-identical to boto3 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint_url", "region", "style"), CONFIGS, ids=lambda v: str(v))
def test_identical_to_boto3_for_key_corpus(endpoint_url, region, style):
    client = boto3_client(endpoint_url, region, style)
    signer = presigner(endpoint_url, region, style)
    assert signer.supports(extra_params={"ResponseContentDisposition": "x"})
    mismatches = []
    with frozen_botocore_clock(NOW):
        for key in KEYS:
            for disposition in DISPOSITIONS:
                expected = boto3_url(client, "models", key, 3600, disposition)
                got = signer.presign_get(
                    bucket="models", key=key, expires_in=3600, response_content_disposition=disposition, now=NOW
                )
                if got != expected:
                    mismatches.append((key, disposition, expected, got))
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize(("endpoint_url", "region", "style"), CONFIGS, ids=lambda v: str(v))
def test_identical_to_boto3_for_bucket_names(endpoint_url, region, style):
    # Bucket names decide path vs virtual-host style and global vs regional host.
    client = boto3_client(endpoint_url, region, style)
    signer = presigner(endpoint_url, region, style)
    with frozen_botocore_clock(NOW):
        for bucket in BUCKETS:
            assert signer.presign_get(bucket=bucket, key="k/v", expires_in=60, now=NOW) == boto3_url(
                client, bucket, "k/v", 60
            ), bucket


def test_aws_hosts_are_the_ones_boto3_picks():
    # Spelled out so a botocore change in host selection shows up as a readable host, not just a signature diff.
    cases = {
        ("us-east-1", "auto"): "https://models.s3.amazonaws.com/k",
        ("us-east-1", "path"): "https://s3.amazonaws.com/models/k",
        ("eu-west-1", "auto"): "https://models.s3.amazonaws.com/k",  # presign "auto" uses the global endpoint
        ("eu-west-1", "virtual"): "https://models.s3.eu-west-1.amazonaws.com/k",
        ("eu-west-1", "path"): "https://s3.eu-west-1.amazonaws.com/models/k",
        ("cn-north-1", "auto"): "https://models.s3.cn-north-1.amazonaws.com.cn/k",
    }
    for (region, style), prefix in cases.items():
        url = presigner(None, region, style).presign_get(bucket="models", key="k", expires_in=60, now=NOW)
        with frozen_botocore_clock(NOW):
            assert url == boto3_url(boto3_client(None, region, style), "models", "k", 60)
        assert url.startswith(prefix + "?"), (region, style, url)
        assert f"%2F{region}%2Fs3%2Faws4_request" in url  # signed for the client's region even on the global host


def test_clock_handling_matches_boto3_across_midnight():
    # The signing key is cached per day; crossing midnight must derive a new one.
    client = boto3_client("http://127.0.0.1:9000", "us-east-1", "path")
    signer = presigner("http://127.0.0.1:9000", "us-east-1", "path")
    for now in (NOW, NOW + datetime.timedelta(seconds=1), NOW + datetime.timedelta(days=400)):
        with frozen_botocore_clock(now):
            expected = boto3_url(client, "models", "k", 600)
        assert signer.presign_get(bucket="models", key="k", expires_in=600, now=now) == expected
        aware = now.replace(tzinfo=datetime.UTC).astimezone(datetime.timezone(datetime.timedelta(hours=5)))
        assert signer.presign_get(bucket="models", key="k", expires_in=600, now=aware) == expected
        # Different expiry in the same second must not reuse the cached query.
        with frozen_botocore_clock(now):
            assert signer.presign_get(bucket="models", key="k", expires_in=7, now=now) == boto3_url(
                client, "models", "k", 7
            )


def test_default_clock_is_current_utc_time():
    signer = presigner("http://127.0.0.1:9000", "us-east-1", "path")
    before = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    url = signer.presign_get(bucket="models", key="k", expires_in=60)
    after = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp = url.split("X-Amz-Date=")[1][:16]
    assert before <= stamp <= after


# -- supports() and fallback ------------------------------------------------------------------------------------------


def test_session_token_is_not_supported_and_caller_falls_back_to_boto3():
    signer = presigner("http://127.0.0.1:9000", "us-east-1", "path", session_token="FwoGZXIvYXdzEXAMPLE")
    assert not signer.supports()
    assert not signer.supports(extra_params={})
    with pytest.raises(UnsupportedRequest):
        signer.presign_get(bucket="models", key="k", expires_in=60, now=NOW)
    client = boto3_client("http://127.0.0.1:9000", "us-east-1", "path", "FwoGZXIvYXdzEXAMPLE")
    url = presign_with_fallback(signer, client, bucket="models", key="k", expires_in=60)
    assert "X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE" in url


def test_supports_only_known_extra_params():
    signer = presigner("http://127.0.0.1:9000", "us-east-1", "path")
    assert signer.supports()
    assert signer.supports(extra_params=None)
    assert signer.supports(extra_params={"ResponseContentDisposition": "attachment"})
    assert not signer.supports(extra_params={"ResponseContentType": "text/plain"})
    assert not signer.supports(extra_params={"ResponseContentDisposition": "a", "VersionId": "v1"})


@pytest.mark.parametrize(
    ("endpoint_url", "region", "style"),
    [
        ("http://[::1]:9000", "us-east-1", "path"),  # IPv6
        ("http://user:pw@host:9000", "us-east-1", "path"),
        ("http://host:9000/?x=1", "us-east-1", "path"),
        ("http://host:9000/a/../b", "us-east-1", "path"),
        ("ftp://host", "us-east-1", "path"),
        ("http://host:notaport", "us-east-1", "path"),
        (None, "aws-global", "auto"),
        (None, "us-iso-east-1", "auto"),
        (None, "garage", "auto"),
        ("http://host:9000", "US-EAST-1", "path"),
        ("http://host:9000", "us-east-1", "sideways"),
    ],
)
def test_unreproduced_configs_are_not_supported(endpoint_url, region, style):
    signer = presigner(endpoint_url, region, style)
    assert not signer.supports()
    assert signer.unsupported_reason
    with pytest.raises(UnsupportedRequest):
        signer.presign_get(bucket="models", key="k", expires_in=60)


@pytest.mark.parametrize("var", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_USE_FIPS_ENDPOINT"])
def test_environment_endpoint_overrides_are_not_supported(monkeypatch, var):
    monkeypatch.setenv(var, "https://elsewhere.example" if "URL" in var else "true")
    assert not presigner(None, "us-east-1", "auto").supports()
    assert presigner("http://127.0.0.1:9000", "us-east-1", "path").supports()  # explicit endpoint_url wins in boto3


@pytest.mark.parametrize(
    "bucket", ["bucket--usw2-az1--x-s3", "alias--op-s3", "arn:aws:s3:us-east-1:123:accesspoint/x", "sp ace"]
)
def test_special_bucket_names_raise_unsupported(bucket):
    signer = presigner("http://127.0.0.1:9000", "us-east-1", "path")
    with pytest.raises(UnsupportedRequest):
        signer.presign_get(bucket=bucket, key="k", expires_in=60, now=NOW)


def test_rejects_empty_key_and_non_int_expiry():
    signer = presigner("http://127.0.0.1:9000", "us-east-1", "path")
    with pytest.raises(ValueError):
        signer.presign_get(bucket="models", key="", expires_in=60)
    with pytest.raises(TypeError):
        signer.presign_get(bucket="models", key="k", expires_in=60.0)


# -- against a real SigV4-verifying server ----------------------------------------------------------------------------

SERVER_KEYS = [
    "plain.bin",
    "with space/plus+equals=amp&.bin",
    "unicode/é中文😀.bin",
    "reserved/~()!*';,@$%#?.bin",
    # Long but within nanio's limits (1024-byte keys, 255-byte path components on disk).
    "long/" + "/".join(f"segment-{i:03d}" for i in range(70)) + ".bin",
]


@pytest.fixture(scope="module")
def nanio_server():
    server = start_nanio()
    try:
        client = server.client()
        for i, key in enumerate(SERVER_KEYS):
            client.put_object(Bucket=server.bucket, Key=key, Body=f"payload {i} for {key}".encode())
        yield server
    finally:
        stop_nanio(server)


def nanio_presigner(server, style: str = "path") -> Presigner:
    return Presigner(
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        endpoint_url=server.endpoint_url,
        addressing_style=style,
    )


def fetch(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}, method=method), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
@pytest.mark.parametrize("style", ["auto", "path", "virtual"])
def test_server_accepts_presigned_urls(nanio_server, style):
    signer = nanio_presigner(nanio_server, style)
    for i, key in enumerate(SERVER_KEYS):
        for disposition in (None, "attachment; filename*=UTF-8''" + quote(key.rsplit("/", 1)[-1], safe="")):
            url = signer.presign_get(
                bucket=nanio_server.bucket, key=key, expires_in=300, response_content_disposition=disposition
            )
            assert fetch(url) == (200, f"payload {i} for {key}".encode()), (key, url)


@pytest.mark.slow
def test_server_rejects_tampered_signature(nanio_server):
    url = nanio_presigner(nanio_server).presign_get(bucket=nanio_server.bucket, key="plain.bin", expires_in=300)
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert fetch(tampered)[0] == 403
    other_key = url.replace("/plain.bin?", "/unicode/%C3%A9%E4%B8%AD%E6%96%87%F0%9F%98%80.bin?")
    assert fetch(other_key)[0] == 403
    assert fetch(url, method="HEAD")[0] == 403  # the signature covers the method


@pytest.mark.slow
def test_server_rejects_expired_url(nanio_server):
    url = nanio_presigner(nanio_server).presign_get(bucket=nanio_server.bucket, key="plain.bin", expires_in=1)
    time.sleep(2.1)
    assert fetch(url)[0] == 403


@pytest.mark.slow
def test_server_serves_range_requests(nanio_server):
    key = SERVER_KEYS[2]
    url = nanio_presigner(nanio_server).presign_get(bucket=nanio_server.bucket, key=key, expires_in=300)
    status, body = fetch(url, headers={"Range": "bytes=2-9"})
    assert (status, body) == (206, f"payload 2 for {key}".encode()[2:10])
