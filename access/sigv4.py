"""Fast SigV4 query-string presigner for S3 GET URLs, byte-identical to boto3.

Why this exists: a model page links every shard of a checkpoint (OPT-175B has 992), and boto3's
``generate_presigned_url`` spends 140-190 µs per URL in parameter validation, event hooks and endpoint-ruleset
evaluation around a few microseconds of hashing. ``Presigner`` does only the SigV4 work: the signing key (and its
HMAC pad states) is derived once per UTC day, the credential scope, query string and canonical-request constants
are built once per timestamp, the endpoint once per bucket, and each URL costs one quote(), one SHA-256 and one
HMAC -- about 2 µs (see bench/bench_signing.py).

What it covers -- exactly what this boto3 call yields::

    client = boto3.client("s3", endpoint_url=..., region_name=..., aws_access_key_id=..., aws_secret_access_key=...,
                          config=Config(signature_version="s3v4", s3={"addressing_style": style}))
    client.generate_presigned_url("get_object", ExpiresIn=n,
                                  Params={"Bucket": b, "Key": k[, "ResponseContentDisposition": d]})

for ``style`` in auto/path/virtual and either

* a custom ``endpoint_url`` (http/https, DNS name or IPv4 address, optional port and plain path prefix): auto and
  path put the bucket in the path; virtual puts it in the host name unless botocore's ruleset keeps it in the path
  (IP endpoints, bucket names that are not valid host labels), or
* no endpoint (AWS) in the aws, aws-cn and aws-us-gov partitions, including botocore's presign quirk where "auto"
  in the aws partition uses the global ``{bucket}.s3.amazonaws.com`` host whatever the region.

Anything else -- session tokens, other request parameters, IPv6 or unusual endpoints, other partitions, environment
variables that re-route boto3's endpoint -- makes ``supports()`` return False and the caller must fall back to
boto3. Bucket names botocore treats specially (S3 Express ``--x-s3``, access-point and Outposts aliases, anything
outside ``[A-Za-z0-9._-]``) make ``presign_get`` raise ``UnsupportedRequest``, also a cue to fall back. Settings in
``~/.aws/config`` (endpoint_url, use_fips_endpoint, use_dualstack_endpoint, s3.us_east_1_regional_endpoint) are not
read and assumed absent. ``tests/test_sigv4.py`` checks byte-identity against the installed botocore.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
import time
from urllib.parse import quote, urlsplit

__all__ = ["Presigner", "UnsupportedRequest"]

_ALGORITHM = "AWS4-HMAC-SHA256"
_SUPPORTED_EXTRA_PARAMS = frozenset({"ResponseContentDisposition"})
_ADDRESSING_STYLES = frozenset({"auto", "path", "virtual"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Partitions whose S3 hosts are plain ``s3.{region}.{dnsSuffix}``; regexes from botocore's data/partitions.json,
# checked in botocore's order (aws first).
_PARTITIONS = (
    ("aws", re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+"), "amazonaws.com"),
    ("aws-cn", re.compile(r"cn-\w+-\d+"), "amazonaws.com.cn"),
    ("aws-us-gov", re.compile(r"us-gov-\w+-\d+"), "amazonaws.com"),
)
# Same rules as botocore's endpoint_provider.VALID_HOST_LABEL_RE and compat.IPV4_RE, ASCII only.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_REGION = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")
# Suffixes that send botocore down S3 Express / access-point / Outposts branches with other hosts or signers.
_SPECIAL_BUCKET_SUFFIXES = ("--x-s3", "--xa-s3", "--op-s3")
_ENDPOINT_HOST = re.compile(r"[A-Za-z0-9.-]+")
# Path prefixes that botocore's quote(normalize_url_path(...)) leaves unchanged.
_ENDPOINT_PATH = re.compile(r"(/(?!\.\.?(/|$))[A-Za-z0-9._~-]+)*/?")
# Environment variables that make boto3 pick another host than the one computed here.
_ENDPOINT_ENV_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT")
_MAX_CACHED_BUCKETS = 256
# (X-Amz-Date, expires_in, auth query string, string-to-sign head, HMAC inner pad, HMAC outer pad)
_Stamp = tuple[str, int, str, str, "hashlib._Hash", "hashlib._Hash"]


class UnsupportedRequest(ValueError):
    """This request cannot be presigned byte-identically to boto3; use boto3 instead."""


class _Target:
    """Where a bucket lives: URL origin, path before the key, and the constant tail of the canonical request."""

    __slots__ = ("base_path", "canonical_tail", "origin")

    def __init__(self, origin: str, base_path: str, host: str) -> None:
        self.origin = origin
        # botocore's _urljoin drops one slash when the endpoint path ends with "/" and the key path starts with it.
        self.base_path = base_path[:-1] if base_path.endswith("/") else base_path
        self.canonical_tail = f"\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"


def _virtual_hostable(bucket: str, allow_dots: bool) -> bool:
    # botocore's aws.isVirtualHostableS3Bucket.
    if len(bucket) < 3 or bucket.lower() != bucket or _IPV4.fullmatch(bucket):
        return False
    labels = bucket.split(".") if allow_dots else [bucket]
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def _host_header(hostname: str, scheme: str, port: int | None) -> str:
    # botocore's _host_from_url: lowercase host, port only when it is not the scheme's default.
    return hostname if port is None or port == _DEFAULT_PORTS[scheme] else f"{hostname}:{port}"


class Presigner:
    """Presigns S3 GET URLs exactly like boto3's ``generate_presigned_url`` for the configurations in the module doc.

    Call ``supports()`` first; when it is False (or ``presign_get`` raises ``UnsupportedRequest``) use boto3.
    """

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        region: str,
        endpoint_url: str | None,
        addressing_style: str = "auto",
        session_token: str | None = None,
    ) -> None:
        self._secret_key = secret_key
        self._region = region
        self._style = addressing_style
        self._endpoint = None
        self._partition = self._dns_suffix = ""
        self.unsupported_reason: str | None = None
        try:
            self._check_config(session_token)
            if endpoint_url is not None:
                self._endpoint = self._parse_endpoint(endpoint_url)
            else:
                self._partition, self._dns_suffix = self._aws_partition(region)
        except UnsupportedRequest as exc:
            self.unsupported_reason = str(exc)
        self._credential_prefix = quote(access_key, safe="-_.~") + "%2F"
        self._scope_suffix = f"/{region}/s3/aws4_request"
        self._credential_suffix = quote(self._scope_suffix, safe="-_.~")
        self._targets: dict[str, _Target] = {}
        self._day: tuple[str, hashlib._Hash, hashlib._Hash] | None = None  # (YYYYMMDD, HMAC pads)
        self._stamp: _Stamp | None = None
        self._clock: tuple[int, str] = (-1, "")  # (epoch second, X-Amz-Date)
        self._given_now: tuple[datetime.datetime | None, str] = (None, "")

    # -- configuration -------------------------------------------------------------------------------------------

    def _check_config(self, session_token: str | None) -> None:
        if session_token is not None:
            raise UnsupportedRequest("session tokens add X-Amz-Security-Token; left to boto3")
        if self._style not in _ADDRESSING_STYLES:
            raise UnsupportedRequest(f"unknown addressing style {self._style!r}")
        if not _REGION.fullmatch(self._region):
            raise UnsupportedRequest(f"region {self._region!r} is not a plain DNS label")

    def _parse_endpoint(self, endpoint_url: str) -> tuple[str, str, str, int | None, str]:
        try:
            parts = urlsplit(endpoint_url)
            port = parts.port
        except ValueError as exc:
            raise UnsupportedRequest(f"endpoint {endpoint_url!r}: {exc}") from None
        hostname = parts.hostname or ""
        if (
            parts.scheme not in _DEFAULT_PORTS
            or not endpoint_url.startswith(f"{parts.scheme}://")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
            or not _ENDPOINT_HOST.fullmatch(parts.netloc.rpartition(":")[0] if port is not None else parts.netloc)
            or not _ENDPOINT_PATH.fullmatch(parts.path)
        ):
            raise UnsupportedRequest(f"endpoint {endpoint_url!r} is outside the reproduced subset")
        return parts.scheme, parts.netloc, hostname, port, parts.path

    @staticmethod
    def _aws_partition(region: str) -> tuple[str, str]:
        for var in (*_ENDPOINT_ENV_VARS, "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT"):
            value = os.environ.get(var, "").strip().lower()
            if value and value not in ("false", "legacy"):
                raise UnsupportedRequest(f"{var} changes boto3's endpoint")
        for name, pattern, dns_suffix in _PARTITIONS:
            if pattern.fullmatch(region):
                return name, dns_suffix
        raise UnsupportedRequest(f"region {region!r} is not in the aws, aws-cn or aws-us-gov partition")

    def supports(self, *, extra_params: dict | None = None) -> bool:
        """True when ``presign_get`` reproduces boto3 for this config and these extra GetObject params."""
        if self.unsupported_reason is not None:
            return False
        return not extra_params or extra_params.keys() <= _SUPPORTED_EXTRA_PARAMS

    # -- endpoint resolution (the slice of botocore's S3 endpoint ruleset that applies here) -----------------------

    def _resolve(self, bucket: str) -> _Target:
        if not _BUCKET.fullmatch(bucket) or bucket.endswith(_SPECIAL_BUCKET_SUFFIXES):
            raise UnsupportedRequest(f"bucket name {bucket!r} takes a special path in botocore")
        if self._endpoint is not None:
            return self._resolve_custom(bucket)
        return self._resolve_aws(bucket)

    def _resolve_custom(self, bucket: str) -> _Target:
        scheme, netloc, hostname, port, path = self._endpoint
        if self._style == "virtual":
            # Ruleset: label-like buckets go in the host unless the endpoint is an IP; dotted ones only over http
            # (even for IP endpoints -- botocore's rule, not ours).
            if _virtual_hostable(bucket, False):
                in_host = _IPV4.fullmatch(hostname) is None
            else:
                in_host = scheme == "http" and _virtual_hostable(bucket, True)
            if in_host:
                return _Target(
                    f"{scheme}://{bucket}.{netloc}", path, _host_header(f"{bucket}.{hostname}", scheme, port)
                )
        # botocore forces path style for custom endpoints unless "virtual" was asked for explicitly.
        normalized = path if path.endswith("/") else f"{path}/"
        return _Target(f"{scheme}://{netloc}", f"{normalized}{bucket}", _host_header(hostname, scheme, port))

    def _resolve_aws(self, bucket: str) -> _Target:
        region = self._region
        # botocore.signers._should_use_global_endpoint + handlers.customize_endpoint_resolver_builtins: presigned
        # "auto" URLs in the aws partition use the global endpoint when the bucket is a valid host label.
        global_endpoint = region == "us-east-1" or (
            self._style == "auto" and self._partition == "aws" and _HOST_LABEL.fullmatch(bucket) is not None
        )
        s3_host = "s3.amazonaws.com" if global_endpoint else f"s3.{region}.{self._dns_suffix}"
        if self._style != "path" and _virtual_hostable(bucket, False):
            host = f"{bucket}.{s3_host}"
            return _Target(f"https://{host}", "", host)
        return _Target(f"https://{s3_host}", f"/{bucket}", s3_host)

    # -- signing ---------------------------------------------------------------------------------------------------

    def _hmac_pads(self, day: str) -> tuple[hashlib._Hash, hashlib._Hash]:
        """SHA-256 states after absorbing the day's signing key XOR ipad/opad (RFC 2104), derived once per day.

        Copying these and hashing the message is the same HMAC as hmac.digest() at under half the cost, because
        the key schedule is not redone for every URL.
        """
        if self._day is None or self._day[0] != day:
            key = f"AWS4{self._secret_key}".encode()
            for part in (day, self._region, "s3", "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            block = key.ljust(64, b"\0")  # SHA-256 block size; the 32-byte key never needs pre-hashing
            inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
            outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
            self._day = (day, inner, outer)
        return self._day[1], self._day[2]

    def _amz_date(self, now: datetime.datetime | None) -> str:
        # Formatting a timestamp costs more than hashing a URL, so reuse it while the second (or `now`) is unchanged.
        if now is None:
            second = int(time.time())  # botocore truncates datetime.now() to whole seconds too
            if self._clock[0] != second:
                self._clock = (second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)))
            return self._clock[1]
        if self._given_now[0] != now:
            utc = now.astimezone(datetime.UTC) if now.tzinfo is not None else now
            self._given_now = (now, utc.strftime("%Y%m%dT%H%M%SZ"))
        return self._given_now[1]

    def _stamp_for(self, amz_date: str, expires_in: int) -> _Stamp:
        stamp = self._stamp
        if stamp is None or stamp[0] != amz_date or stamp[1] != expires_in:
            day = amz_date[:8]
            auth_query = (
                f"X-Amz-Algorithm={_ALGORITHM}&X-Amz-Credential={self._credential_prefix}{day}{self._credential_suffix}"
                f"&X-Amz-Date={amz_date}&X-Amz-Expires={expires_in}&X-Amz-SignedHeaders=host"
            )
            sts_head = f"{_ALGORITHM}\n{amz_date}\n{day}{self._scope_suffix}\n"
            stamp = self._stamp = (amz_date, expires_in, auth_query, sts_head, *self._hmac_pads(day))
        return stamp

    def presign_get(
        self,
        *,
        bucket: str,
        key: str,
        expires_in: int,
        response_content_disposition: str | None = None,
        now: datetime.datetime | None = None,
    ) -> str:
        """Return the presigned GET URL boto3 would return at ``now`` (naive means UTC; default: current time)."""
        if self.unsupported_reason is not None:
            raise UnsupportedRequest(self.unsupported_reason)
        if not key:
            raise ValueError("key must be a non-empty string")
        if type(expires_in) is not int:
            raise TypeError("expires_in must be an int")
        target = self._targets.get(bucket)
        if target is None:
            if len(self._targets) >= _MAX_CACHED_BUCKETS:
                self._targets.clear()
            target = self._targets[bucket] = self._resolve(bucket)
        _, _, auth_query, sts_head, inner, outer = self._stamp_for(self._amz_date(now), expires_in)

        path = f"{target.base_path}/{quote(key, safe='/~')}"
        if response_content_disposition is None:
            query = canonical_query = auth_query
        else:
            # Operation params precede the auth params in the URL but sort after them ("r" > "X") when signing.
            param = "response-content-disposition=" + quote(response_content_disposition, safe="-_.~")
            query = f"{param}&{auth_query}"
            canonical_query = f"{auth_query}&{param}"
        canonical_request = f"GET\n{path}\n{canonical_query}{target.canonical_tail}"
        string_to_sign = sts_head + hashlib.sha256(canonical_request.encode()).hexdigest()
        mac = inner.copy()
        mac.update(string_to_sign.encode())
        signature = outer.copy()
        signature.update(mac.digest())
        return f"{target.origin}{path}?{query}&X-Amz-Signature={signature.hexdigest()}"
