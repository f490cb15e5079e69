#!/usr/bin/env python3
"""Download model weights released through the model-access portal.

Get this script from the portal and run it with Python 3.9 or newer (standard library only):

    curl --fail-with-body -sS -O https://portal.example.org/download.py
    export PORTAL_TOKEN=...          # your access token; open releases need none (leave it unset)
    python3 download.py facebook/opt-175b --dir ./opt-175b --portal https://portal.example.org

What it does:

 1. asks the portal for the release manifest: every file's path, size, SHA-256, the SHA-256 of each of its
    pieces, and a signed download URL on every mirror that serves it;
 2. keeps the files matching --include (if given) and checks there is enough free disk space;
 3. downloads --jobs files at a time into `<path>.part`, resuming partial files left by earlier runs; checks
    each piece as its last byte arrives and fetches a bad piece again (that piece only) from the next mirror;
    moves to the next mirror when one fails; renames each file to its real name only once its SHA-256 matches;
 4. writes SHA256SUMS into --dir, so you can re-check later with `sha256sum -c SHA256SUMS`.

Run the same command again after an interruption: verified files are skipped, partial ones resumed.
Signed URLs expire; when storage says so, a fresh manifest is fetched and the download carries on.
A download keeps to the revision it started on (recorded in --dir/.portal-download.json), even when the
portal publishes a new one meanwhile, so the folder never mixes files of two revisions; once it is complete,
the next run updates to the latest revision. --revision picks one (its id, or main).
Your token is only ever sent to the portal, never to the storage servers.

Exit status: 0 every selected file is verified, 1 some files failed, 2 usage error or the portal refused, 3 the
revision asked for was withdrawn (the message names the one to use).
The summary ends with a `transferred_bytes=<N>` line (bytes downloaded by this run).
"""

from __future__ import annotations

import argparse
import email.utils
import fnmatch
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait

__version__ = "1.1.0"

CHUNK_SIZE = 1024 * 1024
DEFAULT_PORTAL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_WITHDRAWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER = 600.0  # never sleep longer than this on one Retry-After
MAX_URL_REFRESHES = 2  # fresh manifests per file, without progress in between, when storage keeps answering 403
MAX_BAD_PIECES = 3  # bad pieces from one mirror, for one file, before the rest of the file comes from the next
SUMS_NAME = "SHA256SUMS"
STATE_NAME = ".portal-download.json"  # the revision this folder is being downloaded at
USER_AGENT = f"portal-download/{__version__} Python/{platform.python_version()}"
# What a terminal acts on rather than shows: C0 (ESC starts ANSI sequences; CR and LF overwrite or forge lines),
# DEL and C1 (0x9b is a one-byte CSI).
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
REVISION_RE = re.compile(r"^(main|[0-9a-f]{40})$")
ADVISORY_ID_RE = re.compile(r"^ADV-[0-9]{4}-[0-9]{4,6}$")
CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
REFUSAL_HINTS = {
    "not_authenticated": "This release is gated: pass --token or set PORTAL_TOKEN.",
    "invalid_token": "Check --token / PORTAL_TOKEN; you can create a new token in the portal.",
    "token_expired": "Create a new token in the portal.",
    "token_revoked": "Create a new token in the portal.",
    "gated": "Request access to this model in the portal first.",
    "pending": "Your access request has not been reviewed yet.",
    "expired": "Your access has expired; request access again in the portal.",
    "license_update": "Accept the new license version in the portal (the message says where), then run again.",
    "acknowledge_documents": "Read and acknowledge the documents the message names in the portal, then run again.",
    "revision_not_found": "Pass --revision main to download the latest revision instead.",
    "revision_withdrawn": "Download the revision the message names with --revision, or --revision main.",
    "not_found": "Check the model id (e.g. facebook/opt-175b) and --portal.",
}


# ---------------------------------------------------------------------------------------------------- errors


class Failure(Exception):
    """An error that ends the run, with an optional hint of our own printed on the next line (the message itself
    may quote the server and is printed through shown())."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class Refused(Failure):
    """The portal refused or answered nonsense: the whole run stops with exit status 2."""


class Withdrawn(Refused):
    """The revision asked for was withdrawn: the run stops with exit status 3."""


class DownloadError(Failure):
    """One file could not be downloaded; the others carry on."""


class Transient(Exception):
    """Worth retrying after a pause: 408/429/5xx, timeouts, dropped connections."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UrlExpired(Exception):
    """Storage answered 401/403: the signed URL has most likely expired."""


class Aborted(Exception):
    """Another worker hit a fatal error or the user interrupted the run."""


class MirrorFailed(Exception):
    """A mirror failed for this file; the download carries on from the next one."""


class BadPiece(DownloadError):
    """A piece matches its hash on no mirror."""


# ---------------------------------------------------------------------------------------------------- small helpers


def shown(text: object) -> str:
    """Text from the portal, storage or a manifest made safe to print: control characters dropped."""
    return CONTROL_RE.sub("", str(text))


def human(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def origin(url: str) -> tuple:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def is_http_url(url: object) -> bool:
    try:
        scheme, host, _ = origin(url) if isinstance(url, str) else ("", "", None)
    except ValueError:  # e.g. a non-numeric port
        return False
    return scheme in ("http", "https") and bool(host)


def describe(exc: BaseException) -> str:
    """A short human reason for a network error."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.URLError) and reason is not None:
        exc = reason if isinstance(reason, BaseException) else exc
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "timeout":
        return "timed out"
    return str(exc) or type(exc).__name__


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value.strip())
    return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def error_body_summary(exc: urllib.error.HTTPError) -> str:
    """The useful part of an error body: the portal's JSON `detail`, S3's XML <Code>/<Message>, or plain text."""
    try:
        text = exc.read(8192).decode("utf-8", "replace")
    except Exception:  # the body is only a hint; never let reading it fail the caller
        text = ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and (data.get("code") or data.get("detail")):
        return ": ".join(str(data[k]) for k in ("code", "detail") if data.get(k))
    xml = [re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S) for tag in ("Code", "Message")]
    if any(xml):
        return ": ".join(m.group(1).strip() for m in xml if m)
    return " ".join(text.split())[:200] or str(exc.reason or "")


def unsafe_path_reason(path: object) -> str | None:
    """Why a manifest path must not be written under --dir, or None when it is safe."""
    if not isinstance(path, str) or not path:
        return "not a non-empty string"
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "contains control characters"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "is an absolute path"
    segments = path.split("/")
    if ".." in segments:
        return "contains a '..' segment"
    if any(s in ("", ".") for s in segments):
        return "contains an empty or '.' segment"
    return None


def destination(root: str, path: str) -> str:
    """Where a (checked) manifest path goes; refuses anything that would land outside root."""
    dest = os.path.normpath(os.path.join(root, *path.split("/")))
    if os.path.commonpath([root, dest]) != root or dest == root:
        raise Refused(f"refusing manifest path {path!r}: it points outside {root}")
    return dest


def sha256_file(path: str, on_chunk=None, abort: threading.Event | None = None) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            if abort is not None and abort.is_set():
                raise Aborted()
            hasher.update(chunk)
            if on_chunk:
                on_chunk(len(chunk))
    return hasher.hexdigest()


# ---------------------------------------------------------------------------------------------------- manifest


class FileEntry:
    """One file of the manifest. `sources` are (mirror, url) in the portal's order of preference (the first is
    `url`); `piece_length` and `pieces` are the piece hashes, or 0 and [] when the portal has none."""

    __slots__ = ("path", "piece_length", "pieces", "sha256", "size", "sources", "url")

    def __init__(self, path: str, size: int, sha256: str, url: str, sources=None, piece_length: int = 0, pieces=None):
        self.path, self.size, self.sha256, self.url = path, size, sha256, url
        self.sources = sources or [("", url)]
        self.piece_length, self.pieces = piece_length, pieces or []


class Manifest:
    def __init__(self, repo_id: str, revision: str, expires_at: str, files: list, advisories=None):
        self.repo_id, self.revision, self.expires_at, self.files = repo_id, revision, expires_at, files
        self.advisories = advisories or []


def parse_advisories(items: object) -> list:
    """[{id, severity, title, url, acknowledged}] on the revision served; anything malformed is skipped (it only
    informs)."""
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and ADVISORY_ID_RE.match(item["id"]):
            found.append(
                {
                    "id": item["id"],
                    "severity": str(item.get("severity") or ""),
                    "title": str(item.get("title") or ""),
                    "url": str(item.get("url") or "") if is_http_url(item.get("url")) else "",
                    "acknowledged": item.get("acknowledged") is True,
                }
            )
    return found


def parse_manifest(data: object, repo_id: str) -> Manifest:
    """Validate the portal's JSON manifest; any unsafe or malformed entry refuses the whole manifest."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise Refused("the portal's manifest is malformed (no 'files' list)")
    if str(data.get("repo_id", repo_id)).lower() != repo_id.lower():
        raise Refused(f"the portal sent the manifest of {data.get('repo_id')!r}, not {repo_id!r}")
    files, seen = [], set()
    for item in data["files"]:
        if not isinstance(item, dict):
            raise Refused("the portal's manifest is malformed (a file entry is not an object)")
        path, size, digest, url = (item.get(k) for k in ("path", "size", "sha256", "url"))
        problem = unsafe_path_reason(path)
        if problem:
            raise Refused(f"refusing the manifest: file path {path!r} {problem}; nothing was written")
        if path in seen:
            raise Refused(f"refusing the manifest: {path!r} is listed twice")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Refused(f"refusing the manifest: {path!r} has an invalid size {size!r}")
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            raise Refused(f"refusing the manifest: {path!r} has an invalid sha256 {digest!r}")
        if not is_http_url(url):
            raise Refused(f"refusing the manifest: {path!r} has an invalid URL")
        piece_length, pieces = parse_pieces(item.get("pieces"), path, size)
        seen.add(path)
        files.append(
            FileEntry(path, size, digest.lower(), url, parse_sources(item.get("urls"), path, url), piece_length, pieces)
        )
    return Manifest(
        str(data.get("repo_id") or repo_id),
        str(data.get("revision") or "?"),
        str(data.get("expires_at") or ""),
        files,
        parse_advisories(data.get("advisories")),
    )


def parse_pieces(pieces: object, path: str, size: int) -> tuple:
    """(piece length, [sha256 per piece]) from a manifest entry, or (0, []) when it has none."""
    if pieces is None:
        return 0, []
    length = pieces.get("length") if isinstance(pieces, dict) else None
    hashes = pieces.get("sha256") if isinstance(pieces, dict) else None
    if not isinstance(length, int) or isinstance(length, bool) or length < 1 or not isinstance(hashes, list):
        raise Refused(f"refusing the manifest: {path!r} has malformed piece hashes")
    if len(hashes) != -(-size // length) or not all(isinstance(h, str) and SHA256_RE.match(h) for h in hashes):
        raise Refused(f"refusing the manifest: the piece hashes of {path!r} do not cover its {size} bytes")
    return length, [h.lower() for h in hashes]


def parse_sources(urls: object, path: str, url: str) -> list:
    """[(mirror, url)] from a manifest entry's `urls`, or the one `url` when it lists no mirrors."""
    if urls is None:
        return [("", url)]
    if not isinstance(urls, list) or not urls:
        raise Refused(f"refusing the manifest: {path!r} has a malformed mirror list")
    sources = []
    for item in urls:
        if not isinstance(item, dict) or not is_http_url(item.get("url")):
            raise Refused(f"refusing the manifest: {path!r} has an invalid mirror URL")
        sources.append((str(item.get("mirror") or ""), item["url"]))
    return sources


# ---------------------------------------------------------------------------------------------------- HTTP


class SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects but never forwards Authorization to another origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if origin(newurl)[0] not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"refusing redirect to {newurl}", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(newurl) != origin(req.full_url):
            new.remove_header("Authorization")
        return new


def build_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(SafeRedirectHandler())


class Backoff:
    """Exponential backoff with jitter; Retry-After from the server wins."""

    def __init__(self, base: float, retries: int, abort: threading.Event):
        self.base, self.retries, self.abort = base, retries, abort

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER) + random.uniform(0, self.base / 2)
        return min(60.0, self.base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))

    def sleep(self, seconds: float) -> None:
        if self.abort.wait(seconds):
            raise Aborted()


class Portal:
    """Talks to the portal API; the only place the token is sent."""

    def __init__(self, base_url: str, token: str | None, opener, timeout: float, backoff: Backoff, progress):
        self.base_url, self.token, self.opener, self.timeout = base_url, token, opener, timeout
        self.backoff, self.progress = backoff, progress

    def manifest(self, repo_id: str, revision: str | None = None) -> Manifest:
        """Fetch and validate the manifest (of `revision`, else the latest), retrying 429/5xx/network errors
        (then DownloadError). A manifest of another revision than the one asked for is refused."""
        url = f"{self.base_url}/api/v1/models/{urllib.parse.quote(repo_id, safe='/')}/manifest?format=json"
        if revision:
            url += "&revision=" + urllib.parse.quote(revision)
        attempt = 0
        while True:
            attempt += 1
            try:
                manifest = parse_manifest(self._get_json(url), repo_id)
                if revision and revision != "main" and manifest.revision != revision:
                    raise Refused(f"the portal sent revision {manifest.revision!r}, not {revision!r}")
                return manifest
            except Transient as exc:
                if attempt > self.backoff.retries:
                    raise DownloadError(f"could not get the manifest after {attempt} attempts: {exc}") from None
                delay = self.backoff.delay(attempt, exc.retry_after)
                self.progress.log(f"manifest: {exc}; retrying in {delay:.1f}s")
                self.backoff.sleep(delay)

    def acknowledge(self, advisory_id: str) -> None:
        """Record that this token's account acknowledged the advisory (once; again changes nothing)."""
        url = f"{self.base_url}/api/v1/advisories/{urllib.parse.quote(advisory_id)}/acknowledge"
        self._get_json(url, method="POST")

    def _get_json(self, url: str, method: str = "GET") -> object:
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", "User-Agent": USER_AGENT}, method=method
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                body = response.read(MAX_MANIFEST_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise Transient(f"cannot reach the portal at {self.base_url}: {describe(exc)}") from None
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise Refused(f"the portal at {self.base_url} did not answer with JSON; is --portal right?") from None

    def _refusal(self, exc: urllib.error.HTTPError) -> Exception:
        status = exc.code
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        try:
            payload = json.loads(exc.read(65536).decode("utf-8", "replace"))
        except Exception:  # an HTML error page, a dropped connection...: fall back to the status line
            payload = None
        payload = payload if isinstance(payload, dict) else {}
        code, detail = str(payload.get("code") or ""), str(payload.get("detail") or exc.reason or "")
        if status in (408, 429) or status >= 500:
            return Transient(f"portal answered HTTP {status}" + (f" ({detail})" if detail else ""), retry_after)
        message = f"the portal refused (HTTP {status}{', ' + code if code else ''}): {detail}"
        hint = REFUSAL_HINTS.get(code)
        return (Withdrawn if code == "revision_withdrawn" else Refused)(message, hint or "")


# ---------------------------------------------------------------------------------------------------- progress


class Progress:
    """Counters plus output: one progress line (files, bytes, rate, ETA), refreshed in place on a terminal and
    logged when it changed (every `interval`, and once at the end) otherwise. Per-file lines (start, done, skip,
    resume) only with `verbose`; retries, warnings and errors always."""

    def __init__(self, tty: bool, interval: float = 5.0, verbose: bool = False):
        self.tty, self.interval, self.verbose = tty, (0.5 if tty else interval), verbose
        self.lock = threading.Lock()
        self.files_total = self.bytes_total = 0
        self.downloaded = self.skipped = self.failed = 0
        self.bytes_done = self.transferred = 0
        self.started = time.monotonic()
        self.samples: deque = deque()
        self.by_mirror: dict = {}  # mirror name -> bytes transferred from it
        self.failures: list = []
        self._line_shown = False
        self._last_report = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)

    # -- output
    def log(self, message: str, error: bool = False) -> None:
        """One log line. On a terminal only errors and retries/warnings are printed above the progress line."""
        with self.lock:
            self._clear()
            stream = sys.stderr if error else sys.stdout
            prefix = "" if self.tty else time.strftime("%H:%M:%S ")
            print(prefix + shown(message), file=stream, flush=True)
            self._draw()

    def info(self, message: str) -> None:
        """Per-file chatter: only with --verbose."""
        if self.verbose:
            self.log(message)

    def _clear(self) -> None:
        if self.tty and self._line_shown:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self._line_shown = False

    def _draw(self) -> None:
        if self.tty and self._thread.is_alive():
            width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
            sys.stdout.write("\r" + self.status_line()[:width] + "\x1b[K")
            sys.stdout.flush()
            self._line_shown = True

    def status_line(self) -> str:
        now = time.monotonic()
        self.samples.append((now, self.transferred))
        while len(self.samples) > 2 and now - self.samples[0][0] > 10:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        rate = (self.transferred - b0) / (now - t0) if now - t0 > 0.5 else 0.0
        remaining = max(0, self.bytes_total - self.bytes_done)
        eta = duration(remaining / rate) if rate > 0 else "--"
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.downloaded + self.skipped}/{self.files_total} files{failed}  "
            f"{human(self.bytes_done)} / {human(self.bytes_total)}  {human(rate)}/s  ETA {eta}"
        )

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                if self.tty:
                    self._draw()
                    continue
                self._report()

    def _report(self) -> None:
        report = (self.downloaded, self.skipped, self.failed, self.bytes_done)
        line = self.status_line()
        if report != self._last_report:
            self._last_report = report
            print(time.strftime("%H:%M:%S ") + "progress: " + line, flush=True)

    def start(self, files_total: int, bytes_total: int) -> None:
        self.files_total, self.bytes_total = files_total, bytes_total
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        started = self._thread.is_alive()
        if started:
            self._thread.join()
        with self.lock:
            self._clear()
            if started and not self.tty:
                self._report()

    # -- counters
    def advance(self, done: int, transferred: int = 0, mirror: str = "") -> None:
        with self.lock:
            self.bytes_done += done
            self.transferred += transferred
            if transferred:
                self.by_mirror[mirror] = self.by_mirror.get(mirror, 0) + transferred

    def finished(self, how: str) -> None:
        with self.lock:
            setattr(self, how, getattr(self, how) + 1)

    def file_failed(self, path: str, reason: str) -> None:
        with self.lock:
            self.failed += 1
            self.failures.append((path, reason))
        self.log(f"FAILED {path}: {reason}", error=True)


# ---------------------------------------------------------------------------------------------------- one file


class PartFile:
    """The `<path>.part` being written and the running SHA-256 of everything in it. With piece hashes it also
    hashes the piece being written; the writer stops at each piece's end (`room()`) and calls check_piece()."""

    def __init__(self, path: str, total: int = 0, piece_length: int = 0, pieces=None):
        self.path, self.total = path, total
        self.piece_length, self.pieces = piece_length, pieces or []
        self.size, self.hasher = 0, hashlib.sha256()
        self.piece, self.piece_start, self.piece_mark = hashlib.sha256(), 0, hashlib.sha256()
        self.fh = open(path, "ab")  # noqa: SIM115 -- closed by close(), which the caller calls in a finally

    def hash_existing(self, on_chunk, abort: threading.Event) -> int:
        """Hash what an earlier run left, checking its complete pieces; a bad piece and everything after it
        are cut off. Returns the number of bytes cut off."""
        found = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
                if abort.is_set():
                    raise Aborted()
                on_chunk(len(chunk))
                view = memoryview(chunk)
                while view:
                    take = min(len(view), self.room()) if self.piece_length else len(view)
                    self._feed(view[:take])
                    view = view[take:]
                    if self.piece_done() and not self.check_piece():
                        return found - self.size
        return 0

    def room(self) -> int:
        """Bytes that fit before the current piece ends (before the file ends without piece hashes)."""
        if not self.piece_length:
            return self.total - self.size
        return min(self.piece_start + self.piece_length, self.total) - self.size

    def piece_done(self) -> bool:
        return bool(self.piece_length) and self.size > self.piece_start and self.room() == 0

    @property
    def piece_index(self) -> int:
        return self.piece_start // self.piece_length

    def piece_range(self) -> tuple:
        """First and last byte of the current piece."""
        return self.piece_start, min(self.piece_start + self.piece_length, self.total) - 1

    def check_piece(self) -> bool:
        """The piece just completed against its hash: kept (the next piece starts), or rolled back."""
        if self.piece.hexdigest() == self.pieces[self.piece_index]:
            self.piece, self.piece_start, self.piece_mark = hashlib.sha256(), self.size, self.hasher.copy()
            return True
        self.drop_piece()
        return False

    def drop_piece(self) -> None:
        """Roll back to the first byte of the current piece."""
        self.rollback((self.piece_start, self.piece_mark.copy(), hashlib.sha256(), self.piece_start, self.piece_mark))

    def _feed(self, data) -> None:
        self.hasher.update(data)
        if self.piece_length:
            self.piece.update(data)
        self.size += len(data)

    def write(self, data) -> None:
        self.fh.write(data)
        self.fh.flush()  # what is on disk is what a later run resumes from
        self._feed(data)

    def checkpoint(self) -> tuple:
        return self.size, self.hasher.copy(), self.piece.copy(), self.piece_start, self.piece_mark.copy()

    def rollback(self, checkpoint: tuple) -> None:
        self.size, self.hasher, self.piece, self.piece_start, self.piece_mark = checkpoint
        self.fh.flush()
        self.fh.truncate(self.size)

    def reset(self) -> None:
        self.rollback((0, hashlib.sha256(), hashlib.sha256(), 0, hashlib.sha256()))

    def close(self, sync: bool = False) -> None:
        if sync:
            self.fh.flush()
            os.fsync(self.fh.fileno())
        self.fh.close()


class Job:
    def __init__(self, entry: FileEntry, root: str):
        self.entry = entry
        self.dest = destination(root, entry.path)
        self.part = self.dest + ".part"

    def bytes_needed(self) -> int:
        """Bytes still to download, counting a correctly sized final file or a partial file as (partly) present."""
        size = self.entry.size
        if os.path.isfile(self.dest) and os.path.getsize(self.dest) == size:
            return 0
        if os.path.isfile(self.part) and os.path.getsize(self.part) <= size:
            return size - os.path.getsize(self.part)
        return size


class Sources:
    """The mirrors one file comes from: (mirror, url) in the portal's order, the one in use, and how many bad
    pieces each has served for this file."""

    def __init__(self, urls: list, generation: int):
        self.urls, self.generation = urls, generation
        self.index = 0
        self.bad = [0] * len(urls)

    @property
    def url(self) -> str:
        return self.urls[self.index][1]

    def name(self, index: int | None = None) -> str:
        return self.urls[self.index if index is None else index][0] or "storage"

    def others(self) -> list:
        """Indices to fetch a bad piece again from: the next mirrors in order, then the one in use."""
        count = len(self.urls)
        return [(self.index + step) % count for step in range(1, count + 1)]

    def advance(self) -> int:
        self.index = (self.index + 1) % len(self.urls)
        return self.index

    def update(self, fresh: Sources) -> None:
        """Take fresh URLs, staying on the same mirror when it is still listed."""
        by_name = {name: i for i, (name, _) in enumerate(fresh.urls)}
        index = by_name.get(self.urls[self.index][0], 0)
        bad = {name: self.bad[i] for i, (name, _) in enumerate(self.urls)}
        self.urls, self.generation, self.index = fresh.urls, fresh.generation, index
        self.bad = [bad.get(name, 0) for name, _ in fresh.urls]


class Downloader:
    """Runs the jobs on a thread pool and shares one fresh manifest per URL-expiry wave."""

    def __init__(self, portal: Portal, manifest: Manifest, progress: Progress, opener, timeout: float, backoff):
        self.portal, self.progress, self.opener, self.timeout, self.backoff = portal, progress, opener, timeout, backoff
        self.repo_id = manifest.repo_id
        # Fresh manifests are of the revision this run started on, never a newer one published meanwhile.
        self.revision = manifest.revision if REVISION_RE.match(manifest.revision) else None
        self.entries = {f.path: f for f in manifest.files}
        self.generation = 0
        self.lock = threading.Lock()
        self.abort = backoff.abort
        self.fatal: Refused | None = None

    def run(self, jobs: list, workers: int) -> None:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
        try:
            pending = {pool.submit(self.run_job, job) for job in jobs}
            while pending:  # wait in slices so Ctrl-C reaches the main thread
                _, pending = wait(pending, timeout=0.5)
        except BaseException:  # Ctrl-C: tell the workers to stop, but do not wait for them
            self.abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def run_job(self, job: Job) -> None:
        """Worker entry point: every outcome is recorded in the progress counters."""
        if self.abort.is_set():
            return
        try:
            self.progress.finished(self.fetch(job))
        except DownloadError as exc:
            self.progress.file_failed(job.entry.path, str(exc))
        except Refused as exc:
            with self.lock:
                self.fatal = self.fatal or exc
            self.abort.set()
        except Aborted:
            pass
        except OSError as exc:
            self.progress.file_failed(job.entry.path, f"local file error: {exc}")
        except Exception as exc:  # a bug must not hang or kill the other downloads
            self.progress.file_failed(job.entry.path, f"unexpected error: {exc!r}")

    # -- shared signed URLs
    def current_sources(self, entry: FileEntry) -> Sources:
        """This file's mirrors and URLs from the newest manifest; fails if the file changed meanwhile."""
        with self.lock:
            fresh, generation = self.entries.get(entry.path), self.generation
        if fresh is None or fresh.sha256 != entry.sha256 or fresh.size != entry.size:
            raise DownloadError("the release changed while downloading (file removed or replaced); run again")
        return Sources(fresh.sources, generation)

    def refresh_sources(self, sources: Sources, entry: FileEntry) -> None:
        self.refresh(sources.generation)
        sources.update(self.current_sources(entry))

    def refresh(self, seen_generation: int) -> None:
        """Fetch a fresh manifest unless another worker already did since we got our URL."""
        with self.lock:
            if self.abort.is_set():
                raise Aborted()
            if self.generation != seen_generation:
                return
            self.progress.log("signed URLs rejected (expired?); fetching a fresh manifest")
            manifest = self.portal.manifest(self.repo_id, self.revision)
            self.entries = {f.path: f for f in manifest.files}
            self.generation += 1

    # -- one file
    def fetch(self, job: Job) -> str:
        """Make job.dest a verified copy: returns 'skipped' or 'downloaded', raises DownloadError."""
        entry = job.entry
        if os.path.isfile(job.dest):
            if os.path.getsize(job.dest) == entry.size:
                if self.verify_existing(job):
                    return "skipped"
                self.progress.log(f"{entry.path}: corrupted local file (sha256 mismatch); downloading it again")
            else:
                self.progress.log(f"{entry.path}: local file has the wrong size; downloading it again")
        os.makedirs(os.path.dirname(job.dest), exist_ok=True)
        self.progress.info(f"start {entry.path} ({human(entry.size)})")
        for round_ in (1, 2):
            digest = self.fetch_part(job)
            if digest == entry.sha256:
                os.replace(job.part, job.dest)
                self.progress.info(f"done {entry.path} (sha256 verified)")
                return "downloaded"
            os.remove(job.part)
            self.progress.advance(-entry.size)
            if round_ == 2:
                raise DownloadError(f"sha256 mismatch again (expected {entry.sha256}, got {digest}); giving up")
            self.progress.log(f"{entry.path}: sha256 mismatch after download; discarding it and downloading again")
        raise AssertionError("unreachable")

    def verify_existing(self, job: Job) -> bool:
        size = job.entry.size
        self.progress.info(f"verifying existing {job.entry.path}")
        if sha256_file(job.dest, lambda n: self.progress.advance(n), self.abort) == job.entry.sha256:
            self.progress.info(f"skip {job.entry.path} (already verified)")
            if os.path.exists(job.part):
                os.remove(job.part)
            return True
        self.progress.advance(-size)
        return False

    def fetch_part(self, job: Job) -> str:
        """Fill job.part up to the expected size (resuming what is there) and return its sha256."""
        entry = job.entry
        if os.path.isfile(job.part) and os.path.getsize(job.part) > entry.size:
            self.progress.log(f"{entry.path}: partial file is larger than the file; starting over")
            os.remove(job.part)
        part = PartFile(job.part, entry.size, entry.piece_length, entry.pieces)
        complete = False
        try:
            dropped = part.hash_existing(lambda n: self.progress.advance(n), self.abort)
            if dropped:
                self.progress.advance(-dropped)
                self.progress.log(
                    f"{entry.path}: piece {part.piece_index} of the partial file is corrupt; resuming there"
                )
            if part.size > 0:
                self.progress.info(f"resume {entry.path} from byte {part.size}")
            self.fill(part, entry)
            complete = True
        finally:
            part.close(sync=complete)
        return part.hasher.hexdigest()

    def fill(self, part: PartFile, entry: FileEntry) -> None:
        """Request the missing bytes until the part is complete, retrying, moving to the next mirror when one
        fails and refreshing URLs as needed."""
        sources = self.current_sources(entry)
        attempt = refreshes = 0
        mark = part.size
        refused: dict = {}  # mirror index -> why it cannot serve this file
        while part.size < entry.size:
            if self.abort.is_set():
                raise Aborted()
            before = part.size
            try:
                self.request(sources, part, entry)
            except MirrorFailed as exc:
                refused[sources.index] = str(exc)
                self.next_mirror(sources, entry, exc, refused)
            except BadPiece:
                raise
            except DownloadError as exc:
                if len(sources.urls) == 1:
                    raise
                refused[sources.index] = str(exc)
                self.next_mirror(sources, entry, exc, refused)
            except UrlExpired as exc:
                if part.size > mark:
                    refreshes, mark = 0, part.size
                refreshes += 1
                if refreshes > MAX_URL_REFRESHES:
                    message = f"storage keeps refusing the download even with fresh URLs ({exc})"
                    if len(sources.urls) == 1:
                        raise DownloadError(message) from None
                    refused[sources.index], refreshes = message, 0
                    self.next_mirror(sources, entry, exc, refused)
                    continue
                self.progress.log(f"{entry.path}: storage refused the signed URL ({exc}); getting a fresh one")
                self.refresh_sources(sources, entry)
            except Transient as exc:
                attempt = 1 if part.size > before else attempt + 1
                count = len(sources.urls)
                if attempt > self.backoff.retries * count:
                    raise DownloadError(f"giving up after {attempt} attempts: {exc}") from None
                if count > 1:
                    failed = sources.name()
                    sources.advance()
                    self.progress.log(f"{entry.path}: {exc} on {failed}; trying {sources.name()}")
                    if sources.index != 0:
                        continue  # the next mirror at once; pause only once every mirror has failed
                delay = self.backoff.delay(-(-attempt // count), exc.retry_after)
                self.progress.log(
                    f"{entry.path}: {exc}; retry {attempt}/{self.backoff.retries * count} in {delay:.1f}s"
                )
                self.backoff.sleep(delay)

    def next_mirror(self, sources: Sources, entry: FileEntry, exc: Exception, refused: dict) -> None:
        """Carry on from the next mirror that has not failed for this file, or give up."""
        failed = sources.name()
        for _ in sources.urls:
            if sources.advance() not in refused:
                self.progress.log(f"{entry.path}: {failed}: {exc}; carrying on from {sources.name()}")
                return
        raise DownloadError(f"every mirror failed; the last one ({failed}): {exc}") from None

    def request(self, sources: Sources, part: PartFile, entry: FileEntry) -> None:
        """One GET for the missing tail of the file, appended to part. No Authorization header, ever."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if part.size:
            headers["Range"] = f"bytes={part.size}-"
        with self.open(sources.url, headers, part, entry) as response:
            self.check_response(response, part, entry)
            self.stream(response, part, entry, sources)

    def open(self, url: str, headers: dict, part: PartFile, entry: FileEntry):
        try:
            return self.opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise self.storage_error(exc, part, entry) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise Transient(f"connection failed: {describe(exc)}") from None

    def request_piece(self, url: str, mirror: str, part: PartFile, entry: FileEntry) -> None:
        """One GET for exactly the current piece, written to part (which the caller then checks)."""
        start, end = part.piece_range()
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Range": f"bytes={start}-{end}"}
        with self.open(url, headers, part, entry) as response:
            self.check_response(response, part, entry, last=end)
            self.stream(response, part, entry, None, limit=end + 1, mirror=mirror)

    def storage_error(self, exc: urllib.error.HTTPError, part: PartFile, entry: FileEntry) -> Exception:
        status, summary = exc.code, error_body_summary(exc)
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        if status in (401, 403):
            return UrlExpired(f"HTTP {status}: {summary}")
        if status in (408, 429) or status >= 500:
            return Transient(f"storage answered HTTP {status}", retry_after)
        if status == 416 and part.size:  # the server's copy is shorter than our partial file: start over
            self.restart(part, entry.path, "server cannot serve the rest of the file (HTTP 416)")
            return Transient("restarting from zero after HTTP 416")
        return DownloadError(f"storage answered HTTP {status}: {summary}")

    def restart(self, part: PartFile, path: str, why: str) -> None:
        self.progress.log(f"{path}: {why}; restarting from zero")
        self.progress.advance(-part.size)
        part.reset()

    def check_response(self, response, part: PartFile, entry: FileEntry, last: int | None = None) -> None:
        """Refuse bodies that are not (the rest of, or bytes part.size..last of) this file before writing a byte
        of them."""
        refuse = "refusing to save the response for " + entry.path
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type in ("text/html", "application/xhtml+xml"):
            raise DownloadError(f"{refuse}: the server sent an HTML page (Content-Type: {content_type}), not the file")
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise DownloadError(f"{refuse}: it is encoded ({encoding}), not the raw file")
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if response.status == 206:
            match = CONTENT_RANGE_RE.match((response.headers.get("Content-Range") or "").strip())
            if not match:
                raise DownloadError(f"{refuse}: 206 answer without a valid Content-Range")
            start, end, total = int(match.group(1)), int(match.group(2)), match.group(3)
            if total != "*" and int(total) != entry.size:
                raise DownloadError(f"{refuse}: Content-Range says {total} bytes, the manifest says {entry.size}")
            if last is not None and (start, end) != (part.size, last):
                raise DownloadError(f"{refuse}: asked for bytes {part.size}-{last}, got {start}-{end}")
            if start != part.size:
                self.restart(part, entry.path, f"server sent a range starting at {start}, not {part.size}")
                raise Transient("asking again for the whole file")
            expected = (entry.size if last is None else last + 1) - part.size
        elif response.status == 200 and last is None:
            expected = entry.size
        elif response.status == 200:
            raise DownloadError(f"{refuse}: the server ignored the Range request for one piece")
        else:
            raise Transient(f"unexpected HTTP {response.status} from storage")
        if length is not None and length != expected:
            raise DownloadError(f"{refuse}: Content-Length is {length} bytes, expected {expected}")
        if response.status == 200 and part.size:
            self.restart(part, entry.path, "server ignored the Range request (answered 200)")

    def stream(
        self, response, part: PartFile, entry: FileEntry, sources: Sources | None, limit=None, mirror: str = ""
    ) -> None:
        """Copy the body to the part in <= 1 MiB pieces, hashing as we go; never more than the expected size.
        With `sources`, each piece is checked as its last byte arrives and a bad one fetched again."""
        limit = entry.size if limit is None else limit
        mirror = sources.urls[sources.index][0] if sources is not None else mirror
        checkpoint = part.checkpoint()
        read = getattr(response, "read1", response.read)
        while True:
            if self.abort.is_set():
                raise Aborted()
            try:
                chunk = read(CHUNK_SIZE)
            except (OSError, http.client.HTTPException) as exc:
                raise Transient(f"connection lost at byte {part.size} of {entry.size}: {describe(exc)}") from None
            if not chunk:
                break
            if part.size + len(chunk) > limit:
                self.progress.advance(checkpoint[0] - part.size)
                part.rollback(checkpoint)
                raise DownloadError(f"refusing to save the response: the server sent more than {entry.size} bytes")
            view = memoryview(chunk)
            while view:
                take = min(len(view), part.room()) if sources is not None and part.piece_length else len(view)
                part.write(view[:take])
                self.progress.advance(take, transferred=take, mirror=mirror)
                view = view[take:]
                if sources is not None and part.piece_done() and not self.piece_ok(part, entry, sources.index, sources):
                    self.repair(part, entry, sources)
        if part.size < limit:
            raise Transient(f"connection closed at byte {part.size} of {entry.size}")

    def piece_ok(self, part: PartFile, entry: FileEntry, index: int, sources: Sources) -> bool:
        """Check the piece just completed; a bad one is rolled back and counted against the mirror."""
        piece, (start, end) = part.piece_index, part.piece_range()
        if part.check_piece():
            return True
        self.progress.advance(-(end - start + 1))
        sources.bad[index] += 1
        self.progress.log(
            f"{entry.path}: piece {piece} (bytes {start}-{end}) from {sources.name(index)} does not match its SHA-256"
        )
        return False

    def repair(self, part: PartFile, entry: FileEntry, sources: Sources) -> None:
        """Fetch the piece that failed its check again (that piece only) from the next mirror, the one in use
        last. The stream from the mirror in use then carries on with the next piece."""
        piece = part.piece_index
        for index in sources.others():
            for _ in range(2):  # a second try only after fresh URLs
                if index >= len(sources.urls):
                    break
                try:
                    self.request_piece(sources.urls[index][1], sources.urls[index][0], part, entry)
                except UrlExpired:
                    self.refresh_sources(sources, entry)
                    continue
                except (Transient, DownloadError) as exc:
                    self.progress.log(f"{entry.path}: piece {piece} from {sources.name(index)}: {exc}")
                    self.progress.advance(part.piece_start - part.size)
                    part.drop_piece()
                    break
                if self.piece_ok(part, entry, index, sources):
                    self.progress.log(f"{entry.path}: piece {piece} fetched again from {sources.name(index)}, verified")
                    if sources.bad[sources.index] >= MAX_BAD_PIECES and len(sources.urls) > 1:
                        raise MirrorFailed(f"{sources.bad[sources.index]} bad pieces")
                    return
                break
        raise BadPiece(f"piece {piece} does not match its SHA-256 on any mirror")


# ---------------------------------------------------------------------------------------------------- main


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="download.py",
        description="Download (and verify) a model release from the model-access portal.",
        epilog=(
            "examples:\n"
            "  PORTAL_TOKEN=... python3 download.py facebook/opt-175b --dir ./opt-175b\n"
            "  python3 download.py facebook/opt-175b --include '*.json' --include 'checkpoint_*shard0.pt'\n\n"
            "Run the same command again to resume; verified files are skipped.\n"
            "Exit status: 0 all files verified, 1 some failed, 2 usage error or the portal refused,\n"
            "3 the revision asked for was withdrawn."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("repo_id", help="model to download, e.g. facebook/opt-175b")
    parser.add_argument("--dir", help="directory to download into (default: the model name, e.g. ./opt-175b)")
    parser.add_argument("--token", help="portal access token (default: $PORTAL_TOKEN; the variable keeps it out of ps)")
    parser.add_argument(
        "--portal",
        default=os.environ.get("PORTAL_URL") or DEFAULT_PORTAL,
        help="portal base URL (default: $PORTAL_URL or %(default)s)",
    )
    parser.add_argument("--jobs", type=positive_int, default=8, help="files downloaded in parallel (default: 8)")
    parser.add_argument(
        "--revision",
        help="revision to download: its 40-hex id or main (default: the one an unfinished download in --dir "
        "started on, else main)",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only files whose path matches this glob ('*' also matches '/'); repeatable",
    )
    parser.add_argument(
        "--acknowledge",
        action="store_true",
        help="record that you read the advisories on the revision downloaded (they are printed either way)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait to connect or for data (60)")
    parser.add_argument("--retries", type=int, default=8, help="retries per request on 429/5xx/timeouts (8)")
    parser.add_argument(
        "--backoff",
        type=float,
        default=env_float("PORTAL_DOWNLOAD_BACKOFF", 1.0),
        help="first retry delay in seconds, doubled each time (default: $PORTAL_DOWNLOAD_BACKOFF or 1)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="a line per file (start, done, skip, resume) besides the progress line"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    if not REPO_ID_RE.match(args.repo_id) or ".." in args.repo_id:
        parser.error(f"invalid model id {args.repo_id!r}; expected owner/name, e.g. facebook/opt-175b")
    portal = urllib.parse.urlsplit(args.portal)
    if portal.scheme not in ("http", "https") or not portal.hostname:
        parser.error(f"invalid --portal URL {args.portal!r}")
    if args.timeout <= 0 or args.retries < 0 or args.backoff < 0:
        parser.error("--timeout must be positive, --retries and --backoff not negative")
    if args.revision is not None and not REVISION_RE.match(args.revision):
        parser.error(f"invalid --revision {args.revision!r}; expected main or a 40-hex revision id")
    args.portal = args.portal.rstrip("/")
    args.dir = args.dir or args.repo_id.split("/")[-1]
    args.token = (args.token or os.environ.get("PORTAL_TOKEN") or "").strip() or None
    return args


def select(files: list, patterns: list | None) -> list:
    if not patterns:
        return list(files)
    return [f for f in files if any(fnmatch.fnmatchcase(f.path, p) for p in patterns)]


def check_disk_space(root: str, jobs: list) -> None:
    needed = sum(job.bytes_needed() for job in jobs)
    free = shutil.disk_usage(root).free
    if needed > free:
        raise DownloadError(
            f"not enough free disk space in {root}: {human(needed)} still to download, only {human(free)} free.",
            "Free some space, choose another --dir, or download fewer files with --include.",
        )


def read_state(root: str, repo_id: str) -> dict:
    """What an earlier run recorded in this folder: {"revision", "complete"} for this repo, else {}."""
    try:
        with open(os.path.join(root, STATE_NAME), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or str(state.get("repo_id", "")).lower() != repo_id.lower():
        return {}
    if not REVISION_RE.match(str(state.get("revision", ""))) or state.get("revision") == "main":
        return {}
    return {"revision": state["revision"], "complete": state.get("complete") is True}


def write_state(root: str, repo_id: str, revision: str, complete: bool) -> None:
    if not REVISION_RE.match(revision) or revision == "main":
        return  # a portal that names no revision: nothing to pin
    tmp = os.path.join(root, STATE_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump({"repo_id": repo_id, "revision": revision, "complete": complete}, out)
    os.replace(tmp, os.path.join(root, STATE_NAME))


def write_sums(root: str, files: list) -> None:
    """SHA256SUMS in the format `sha256sum -c` reads, written atomically."""
    if any(f.path == SUMS_NAME for f in files):
        return  # the release ships its own; never overwrite a model file
    tmp = os.path.join(root, SUMS_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        out.writelines(f"{f.sha256}  {f.path}\n" for f in files)
    os.replace(tmp, os.path.join(root, SUMS_NAME))


def print_summary(progress: Progress, root: str) -> None:
    elapsed = time.monotonic() - progress.started
    rate = progress.transferred / elapsed if elapsed > 0 else 0.0
    print(
        f"Finished in {elapsed:.1f}s: {progress.downloaded} downloaded, {progress.skipped} skipped (already verified), "
        f"{progress.failed} failed, of {progress.files_total} files; "
        f"{human(progress.transferred)} transferred this run ({human(rate)}/s)."
    )
    print(f"transferred_bytes={progress.transferred}")
    if any(progress.by_mirror):  # the portal named its mirrors
        for mirror, count in sorted(progress.by_mirror.items()):
            print(f"transferred_bytes[{shown(mirror)}]={count}")
    for path, reason in progress.failures:
        print(f"  failed: {shown(path)}: {shown(reason)}", file=sys.stderr)
    if progress.downloaded + progress.skipped == progress.files_total:
        print(f"All files verified. Check again any time with: cd {root} && sha256sum -c {SUMS_NAME}")
    else:
        print("Some files are missing or failed: run the same command again to resume.")
    sys.stdout.flush()


def show_advisories(portal: Portal, manifest: Manifest, *, acknowledge: bool) -> None:
    """Print the advisories on this revision not yet acknowledged, before anything is downloaded; with
    --acknowledge, record the acknowledgement. Neither changes the exit status."""
    for advisory in manifest.advisories:
        if advisory["acknowledged"]:
            continue
        print(
            f"ADVISORY {shown(advisory['id'])} ({shown(advisory['severity'])}): {shown(advisory['title'])}\n"
            f"  read it: {shown(advisory['url'])}",
            flush=True,
        )
        if acknowledge:
            try:
                portal.acknowledge(advisory["id"])
            except (Failure, Transient) as exc:
                print(f"  could not record your acknowledgement: {shown(exc)}", file=sys.stderr, flush=True)
            else:
                print("  acknowledged.", flush=True)
        else:
            print("  (run again with --acknowledge to record that you read it)", flush=True)


def run(args: argparse.Namespace) -> int:
    abort = threading.Event()
    progress = Progress(tty=sys.stdout.isatty(), verbose=args.verbose)
    backoff = Backoff(args.backoff, args.retries, abort)
    opener = build_opener()
    if args.token and origin(args.portal)[0] == "http" and origin(args.portal)[1] not in ("localhost", "127.0.0.1"):
        progress.log("warning: sending your token over plain HTTP; use an https:// --portal", error=True)
    portal = Portal(args.portal, args.token, opener, args.timeout, backoff, progress)

    root = os.path.abspath(args.dir)
    state = read_state(root, args.repo_id)
    revision = args.revision
    if revision is None and state and not state["complete"]:
        revision = state["revision"]
        print(
            f"Resuming revision {revision}, which this folder was started on (--revision main for the latest).",
            flush=True,
        )
    manifest = portal.manifest(args.repo_id, revision)
    if state.get("complete") and state["revision"] != manifest.revision:
        print(f"Updating from revision {state['revision']} to {shown(manifest.revision)}.", flush=True)
    show_advisories(portal, manifest, acknowledge=args.acknowledge)
    selected = select(manifest.files, args.include)
    if not selected:
        raise Refused(f"no files selected: the manifest lists {len(manifest.files)}, none match --include")
    jobs = [Job(entry, root) for entry in selected]  # refuses paths escaping root before anything is written
    os.makedirs(root, exist_ok=True)
    check_disk_space(root, jobs)
    write_state(root, args.repo_id, manifest.revision, complete=False)
    write_sums(root, selected)

    total = sum(f.size for f in selected)
    print(
        f"{shown(manifest.repo_id)} @ {shown(manifest.revision)}: {len(selected)} of {len(manifest.files)} files, "
        f"{human(total)}, into {root}",
        flush=True,
    )
    progress.start(len(selected), total)
    downloader = Downloader(portal, manifest, progress, opener, args.timeout, backoff)
    try:
        downloader.run(jobs, args.jobs)
    except KeyboardInterrupt:
        abort.set()
        progress.stop()
        print("\nInterrupted: partial files are kept; run the same command again to resume.", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # do not wait for workers blocked on the network
    progress.stop()
    print_summary(progress, root)
    if downloader.fatal is not None:
        raise downloader.fatal
    if progress.downloaded + progress.skipped != len(selected):
        return EXIT_FAILED
    if not args.include:  # a partial selection does not complete the revision
        write_state(root, args.repo_id, manifest.revision, complete=True)
    return EXIT_OK


def main(argv: list | None = None) -> int:
    if sys.version_info < (3, 9):  # noqa: UP036 -- this script also runs outside the portal's Python
        sys.exit("download.py needs Python 3.9 or newer")
    args = parse_args(argv)
    try:
        return run(args)
    except Failure as exc:
        print(f"error: {shown(exc)}", file=sys.stderr)
        if exc.hint:
            print(exc.hint, file=sys.stderr)
        if isinstance(exc, Withdrawn):
            return EXIT_WITHDRAWN
        return EXIT_REFUSED if isinstance(exc, Refused) else EXIT_FAILED
    except Aborted:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
