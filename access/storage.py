"""Where model files live, behind one interface chosen by STORAGE_BACKEND.

`LocalStorage` keeps files on disk and signs portal URLs with an HMAC; the portal streams the bytes itself in
development, and in production hands them to nginx (`X-Accel-Redirect`) after checking the signature.
`S3Storage` keeps them in any S3-compatible store and hands out presigned SigV4 URLs, or CloudFront signed URLs
when a distribution serves the bucket, so the bytes never pass through the portal. No boto3 call lives outside
this module.

Besides the primary storage (`get_storage()`), STORAGE_MIRRORS names more locations holding copies of the
same files (`get_storage(name)`, `locations()`); whether a mirror may serve a release is recorded per release
(`ReleaseMirror`, written by the mirror verification service), not here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import get_script_prefix, reverse
from django.utils.encoding import force_bytes

CHUNK_SIZE = 1024 * 1024
# Keys under this prefix (the unmarked originals of marked files) are stored but never signed or served.
PRIVATE_PREFIX = "_originals/"


class StorageError(Exception):
    """The storage backend could not be reached or refused an operation."""


class ObjectNotFound(StorageError):
    pass


class UnknownMirror(ValueError):
    """No storage location of that name is configured."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


@dataclass(frozen=True)
class Digest:
    """What one streaming pass over a file's bytes found: its size, its SHA-256, and the SHA-256 of each
    `piece_size` piece (the last one may be shorter; an empty file has none). Unpacks as (size, sha256), what
    save() returned before it hashed pieces."""

    size: int
    sha256: str
    piece_size: int
    pieces: tuple[str, ...]

    def __iter__(self):
        return iter((self.size, self.sha256))


class Hasher:
    """SHA-256 of a whole stream and of its fixed-size pieces, fed chunk by chunk."""

    def __init__(self, piece_size: int | None = None):
        self.piece_size = piece_size or settings.PIECE_SIZE
        self.whole, self.piece = hashlib.sha256(), hashlib.sha256()
        self.size = self.filled = 0
        self.pieces: list[str] = []

    def update(self, data: bytes) -> None:
        self.whole.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece_size - self.filled)
            self.piece.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.piece_size:
                self.pieces.append(self.piece.hexdigest())
                self.piece, self.filled = hashlib.sha256(), 0

    def digest(self) -> Digest:
        pieces = [*self.pieces, self.piece.hexdigest()] if self.filled else self.pieces
        return Digest(self.size, self.whole.hexdigest(), self.piece_size, tuple(pieces))


def content_disposition(filename: str) -> str:
    """An attachment header naming the file, safe for any characters (RFC 6266 / RFC 5987)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def signable_key(key: str) -> str:
    """A key a URL may be signed for: any valid key outside PRIVATE_PREFIX."""
    if validate_key(key).startswith(PRIVATE_PREFIX):
        raise ValueError(f"{PRIVATE_PREFIX} keys are never signed: {key!r}")
    return key


def validate_key(key: str) -> str:
    if not key or "\\" in key or any(ord(ch) < 32 for ch in key) or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


class Storage(ABC):
    name: str

    @abstractmethod
    def save(self, key: str, fileobj: BinaryIO, *, piece_size: int | None = None) -> Digest:
        """Store a stream under key; returns the Digest of the bytes as they were written (pieces of
        `piece_size`, PIECE_SIZE by default)."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[StoredObject]: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def signed_url(self, key: str, *, filename: str, ttl: int | None = None, base_url: str | None = None) -> str:
        """A URL that fetches the object without further credentials until it expires in `ttl` seconds."""

    def signed_urls(
        self, items: list[tuple[str, str]], *, ttl: int | None = None, base_url: str | None = None
    ) -> list[str]:
        """signed_url for many (key, filename) pairs: what a manifest or a grant's batch needs."""
        return [self.signed_url(key, filename=filename, ttl=ttl, base_url=base_url) for key, filename in items]

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError when the backend is not usable."""

    def hash_object(self, key: str, *, piece_size: int | None = None) -> Digest:
        """Stream a stored object once and return its Digest."""
        hasher = Hasher(piece_size)
        with self.open(key) as f:
            while chunk := f.read(CHUNK_SIZE):
                hasher.update(chunk)
        return hasher.digest()


@cache
def _storage_path(script_prefix: str, mirror: str | None = None) -> str:
    """The file view's path up to its expiry segment ("/storage/", or "/storage/<mirror>/" for a local mirror),
    reversed once per script prefix: reversing on every signed URL costs more than signing it."""
    if mirror is None:
        return reverse("storage-file", kwargs={"expires": 0, "signature": "0", "key": "k"}).removesuffix("0/0/k")
    kwargs = {"mirror": mirror, "expires": 0, "signature": "0", "key": "k"}
    return reverse("storage-mirror-file", kwargs=kwargs).removesuffix("0/0/k")


class LocalStorage(Storage):
    """Files under a directory, served through the portal's own signed-URL view: streamed by Django (development),
    or, with `accel_redirect`, sent by nginx from its internal location once the view has checked the URL.

    The primary storage's URLs are /storage/<expires>/<signature>/<key>; a local mirror's name the mirror,
    /storage/<mirror>/<expires>/<signature>/<key>, so the view serves them from the mirror's own directory (and
    its own nginx location), and are signed with a key of their own: a URL for one location opens no other."""

    name = "local"

    def __init__(self, root: Path, *, accel_redirect: str = "", mirror: str | None = None):
        self.root = Path(root)
        self.accel_redirect = accel_redirect
        self.mirror = mirror

    def path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def accel_uri(self, key: str) -> str | None:
        """The URI of the object under nginx's internal location, or None when Django serves the bytes itself.
        Percent-encoded: nginx decodes it, so `?`, `%` and spaces in a key name the file, not a query."""
        if not self.accel_redirect:
            return None
        return self.accel_redirect + quote(validate_key(key), safe="/")

    def save(self, key, fileobj, *, piece_size=None):
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        hasher = Hasher(piece_size)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := fileobj.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return hasher.digest()

    def open(self, key):
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def list(self, prefix):
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".upload-"):
                yield StoredObject(key=path.relative_to(self.root).as_posix(), size=path.stat().st_size)

    def exists(self, key):
        return self.path(key).is_file()

    @staticmethod
    def _hmac_key(mirror: str | None = None) -> bytes:
        purpose = b"access.storage.local" + (b":" + mirror.encode() if mirror else b"")
        return hmac.new(force_bytes(settings.SECRET_KEY), purpose, hashlib.sha256).digest()

    @classmethod
    def signature(cls, key: str, expires: int, hmac_key: bytes | None = None) -> str:
        """HMAC-SHA256 over (key, expiry) with a key derived from SECRET_KEY (the primary storage's, unless
        `hmac_key` is given)."""
        return hmac.new(hmac_key or cls._hmac_key(), f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: int, signature: str, *, now: float | None = None) -> bool:
        if key.startswith(PRIVATE_PREFIX):
            return False
        # The signature comes from the URL, and compare_digest raises TypeError on non-ASCII text.
        if len(signature) != 64 or not set(signature) <= set("0123456789abcdef"):
            return False
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self.signature(key, expires, self._hmac_key(self.mirror)), signature)

    def signed_url(self, key, *, filename, ttl=None, base_url=None):
        return self.signed_urls([(key, filename)], ttl=ttl, base_url=base_url)[0]

    def signed_urls(self, items, *, ttl=None, base_url=None):
        # The signature sits in the path, so the last path segment is the file name and tools that name the
        # saved file after the URL (wget, curl -O) never save a query string. One expiry, one derived key and
        # one URL reversal serve the whole list (a 992-file manifest signs in a few milliseconds).
        expires = int(time.time()) + (ttl or settings.SIGNED_URL_TTL)
        path = _storage_path(get_script_prefix(), self.mirror)
        prefix = f"{(base_url or settings.SITE_URL).rstrip('/')}{path}{expires}/"
        hmac_key = self._hmac_key(self.mirror)
        return [
            f"{prefix}{self.signature(signable_key(key), expires, hmac_key)}/{quote(key, safe='/')}" for key, _ in items
        ]

    def check(self):
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root} is not writable")


class CloudFrontUrls:
    """Canned-policy signed URLs for a CloudFront distribution whose origin is the (private) bucket.

    The URL path is the object key, so it ends in the file name: CloudFront cannot be told a
    `response-content-disposition` as S3 can, and tools (wget, curl -O, browsers) name the file after the path.
    Each URL costs one RSA-SHA1 signature (about 0.3 ms with a 2048-bit key)."""

    def __init__(self, *, domain: str, key_pair_id: str, private_key_pem: str):
        from botocore.signers import CloudFrontSigner
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        try:
            private_key = serialization.load_pem_private_key(force_bytes(private_key_pem), password=None)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"the CloudFront private key is not an unencrypted PEM key: {exc}") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ImproperlyConfigured("the CloudFront private key must be an RSA key (CloudFront signs RSA-SHA1).")
        self.base = f"https://{domain}/"
        self.key_pair_id = key_pair_id
        sha1 = hashes.SHA1()  # noqa: S303 -- the one hash CloudFront verifies signed URLs with
        self.signer = CloudFrontSigner(key_pair_id, lambda message: private_key.sign(message, padding.PKCS1v15(), sha1))

    def sign(self, keys: list[str], *, ttl: int) -> list[str]:
        """One URL per full object key (prefix included), all expiring `ttl` seconds from now."""
        expires = datetime.fromtimestamp(int(time.time()) + ttl, UTC)
        return [
            self.signer.generate_presigned_url(self.base + quote(key, safe="/"), date_less_than=expires) for key in keys
        ]


class S3Storage(Storage):
    """Any S3-compatible store through one reused boto3 client; downloads are presigned SigV4 GET URLs, or
    CloudFront signed URLs when `cloudfront` is given (uploads, listing and hashing still go to the bucket)."""

    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        session_token: str | None = None,
        addressing_style: str = "auto",
        prefix: str = "",
        cloudfront: CloudFrontUrls | None = None,
    ):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cloudfront = cloudfront
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        # Static keys can be signed by our own presigner (much faster, byte-identical to boto3); credentials
        # that refresh themselves (instance roles, session tokens) stay with boto3.
        self.presigner = None
        if access_key and secret_key:
            from .sigv4 import Presigner

            presigner = Presigner(
                access_key=access_key,
                secret_key=secret_key,
                region=region,
                endpoint_url=endpoint_url,
                addressing_style=addressing_style,
                session_token=session_token,
            )
            if presigner.supports():
                self.presigner = presigner

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _errors(self):
        from botocore.exceptions import BotoCoreError, ClientError

        return BotoCoreError, ClientError

    def save(self, key, fileobj, *, piece_size=None):
        from boto3.s3.transfer import TransferConfig

        hasher = Hasher(piece_size)
        # Spool through a temporary file: hashing while uploading a multipart stream would need the bytes twice.
        with tempfile.TemporaryFile() as spool:
            while chunk := fileobj.read(CHUNK_SIZE):
                hasher.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            try:
                self.client.upload_fileobj(
                    spool, self.bucket, self._key(key), Config=TransferConfig(multipart_threshold=64 * CHUNK_SIZE)
                )
            except self._errors() as exc:
                raise StorageError(str(exc)) from exc
        return hasher.digest()

    def hash_object(self, key, *, piece_size=None):
        try:
            return super().hash_object(key, piece_size=piece_size)
        except self._errors() as exc:  # a read that fails half-way through the body
            raise StorageError(str(exc)) from exc

    def open(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self._errors() as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from exc
            raise StorageError(str(exc)) from exc

    def list(self, prefix):
        full = self._key(prefix.strip("/")) + "/" if prefix.strip("/") else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    yield StoredObject(key=obj["Key"][strip:], size=obj["Size"])
        except self._errors() as exc:
            raise StorageError(str(exc)) from exc

    def exists(self, key):
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self._errors() as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise StorageError(str(exc)) from exc

    def signed_url(self, key, *, filename, ttl=None, base_url=None):
        signable_key(key)
        ttl = ttl or settings.SIGNED_URL_TTL
        if self.cloudfront is not None:
            return self.cloudfront.sign([self._key(key)], ttl=ttl)[0]
        disposition = content_disposition(filename)
        if self.presigner is not None:
            from .sigv4 import UnsupportedRequest

            try:
                return self.presigner.presign_get(
                    bucket=self.bucket, key=self._key(key), expires_in=ttl, response_content_disposition=disposition
                )
            except UnsupportedRequest:
                pass  # boto3 knows the special cases (S3 Express, access point ARNs)
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key), "ResponseContentDisposition": disposition},
            ExpiresIn=ttl,
        )

    def signed_urls(self, items, *, ttl=None, base_url=None):
        if self.cloudfront is None:
            return super().signed_urls(items, ttl=ttl, base_url=base_url)
        keys = [self._key(signable_key(key)) for key, _ in items]
        return self.cloudfront.sign(keys, ttl=ttl or settings.SIGNED_URL_TTL)

    def check(self):
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors() as exc:
            raise StorageError(str(exc)) from exc


def build_storage(name: str | None = None) -> Storage:
    """The primary storage, or the mirror of that name."""
    if name is not None and name != settings.STORAGE_NAME:
        mirror = settings.STORAGE_MIRRORS.get(name)
        if mirror is None:
            raise UnknownMirror(name)
        if mirror["backend"] == "local":
            return LocalStorage(Path(mirror["dir"]), accel_redirect=mirror["accel_redirect"], mirror=name)
        return S3Storage(**{k: v for k, v in mirror.items() if k not in ("backend", "location", "priority")})
    if settings.STORAGE_BACKEND == "local":
        return LocalStorage(settings.LOCAL_STORAGE_DIR, accel_redirect=settings.LOCAL_STORAGE_ACCEL_REDIRECT)
    if settings.STORAGE_BACKEND == "s3":
        cloudfront = None
        if settings.CLOUDFRONT_DOMAIN:
            cloudfront = CloudFrontUrls(
                domain=settings.CLOUDFRONT_DOMAIN,
                key_pair_id=settings.CLOUDFRONT_KEY_PAIR_ID,
                private_key_pem=settings.CLOUDFRONT_PRIVATE_KEY,
            )
        return S3Storage(
            bucket=settings.S3_BUCKET,
            endpoint_url=settings.S3_ENDPOINT_URL,
            region=settings.S3_REGION,
            access_key=settings.S3_ACCESS_KEY_ID,
            secret_key=settings.S3_SECRET_ACCESS_KEY,
            session_token=settings.S3_SESSION_TOKEN,
            addressing_style=settings.S3_ADDRESSING_STYLE,
            prefix=settings.S3_PREFIX,
            cloudfront=cloudfront,
        )
    raise ImproperlyConfigured(f"unknown STORAGE_BACKEND {settings.STORAGE_BACKEND!r}")


@cache
def get_storage(name: str | None = None) -> Storage:
    """The process-wide storage (or mirror `name`); each boto3 client is built once and reused (clients are
    thread-safe). The primary's own name gives the primary."""
    if name is not None and name == settings.STORAGE_NAME:
        return get_storage()
    return build_storage(name)


@dataclass(frozen=True)
class Location:
    """A configured storage location: the primary or a mirror, where it is, and its metalink priority
    (1 first). Mirrors other than the primary serve only the releases verified on them."""

    name: str
    priority: int
    country: str = ""
    primary: bool = False


def locations() -> list[Location]:
    """Every configured location in the default order: by priority, then the primary, then mirrors as listed."""
    found = [Location(settings.STORAGE_NAME, settings.STORAGE_PRIORITY, settings.STORAGE_LOCATION, primary=True)]
    found += [Location(name, m["priority"], m["location"]) for name, m in settings.STORAGE_MIRRORS.items()]
    return sorted(found, key=lambda loc: loc.priority)  # stable: ties keep the listed order
