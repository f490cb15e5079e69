"""LocalStorage's signed-URL file view, and the relay that re-signs for tools naming files after the URL."""

from __future__ import annotations

import hashlib
import re
from stat import S_ISREG

from django.conf import settings
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils.http import http_date
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from . import downloads, selectors
from .actors import Actor
from .gate import loader
from .http import base_url, client_ip, download_redirect, json_error
from .models import DownloadEvent, ModelFile, User
from .storage import CHUNK_SIZE, LocalStorage, UnknownMirror, content_disposition, get_storage

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _etag(key: str, stat) -> str:
    return '"' + hashlib.sha256(f"{key}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:32] + '"'


def _read_range(f, start: int, length: int):
    f.seek(start)
    remaining = length
    try:
        while remaining > 0:
            chunk = f.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        f.close()


def _local_storage(mirror: str | None) -> LocalStorage | None:
    """The LocalStorage a signed URL names: the primary's, or the local mirror's of that name."""
    try:
        storage = get_storage(mirror) if mirror is not None else get_storage()
    except UnknownMirror:
        return None
    if not isinstance(storage, LocalStorage) or storage.mirror != mirror:
        return None
    return storage


@require_safe
def storage_file(request, expires: int, signature: str, key: str, mirror: str | None = None):
    """Serve a LocalStorage object for a valid, unexpired signature. Streams in 1 MiB chunks (constant memory),
    answers a single `Range` with 206, and sends extra headers the Hugging Face client reads after a redirect.
    With LOCAL_STORAGE_ACCEL_REDIRECT (a mirror's own LOCAL_ACCEL_REDIRECT) the bytes are nginx's to send: the
    answer is headers only."""
    storage = _local_storage(mirror)
    if storage is None:
        return json_error("not_found", _("Not found."), 404)
    if not storage.verify(key, expires, signature):
        return json_error(
            "invalid_signature", _("This download link is invalid or has expired; ask the portal for a fresh one."), 403
        )
    try:
        path = storage.path(key)
        stat = path.stat()
    except (ValueError, OSError):  # a bad key, no such file, or one nginx could not read either
        return json_error("not_found", _("Not found."), 404)
    if not S_ISREG(stat.st_mode):
        return json_error("not_found", _("Not found."), 404)
    headers = {
        "Content-Disposition": content_disposition(key.rsplit("/", 1)[-1]),
        "Cache-Control": "private, max-age=0",
    }
    linked = loader.stored_file(key=key, revision=request.GET.get("revision", ""))
    if linked is not None:
        size, sha256, commit = linked
        headers.update({"X-Linked-Size": str(size), "X-Linked-Etag": f'"{sha256}"', "X-Repo-Commit": commit})
    accel = storage.accel_uri(key)
    if accel is not None:
        # nginx's internal location sends the file (sendfile, Range, ETag, Last-Modified, HEAD) and keeps
        # Content-Type, Content-Disposition and Cache-Control from this answer; it copies X-Linked-* itself.
        headers["X-Accel-Redirect"] = accel
        response = HttpResponse(content_type="application/octet-stream")
        response._csp_exempt = True  # headers for nginx's answer with a file: no page to protect
        return _with_headers(response, headers)
    size = stat.st_size
    etag = _etag(key, stat)
    headers.update({"Accept-Ranges": "bytes", "ETag": etag, "Last-Modified": http_date(stat.st_mtime)})
    status, start, length = 200, 0, size
    byte_range = _requested_range(request, etag, size)
    if byte_range == "unsatisfiable":
        response = HttpResponse(status=416)
        headers["Content-Range"] = f"bytes */{size}"
        return _with_headers(response, headers)
    if byte_range is not None:
        start, end = byte_range
        status, length = 206, end - start + 1
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        # Headers only, without opening the file: a body here would break keep-alive connections.
        response = HttpResponse(status=status, content_type="application/octet-stream")
    elif status == 200:
        # A whole file goes through the server's file wrapper (sendfile under gunicorn): no Python copy loop.
        response = FileResponse(path.open("rb"), content_type="application/octet-stream")
        response.block_size = CHUNK_SIZE
    else:
        response = StreamingHttpResponse(
            _read_range(path.open("rb"), start, length), status=status, content_type="application/octet-stream"
        )
    return _with_headers(response, headers)


def _requested_range(request, etag: str, size: int):
    """(start, end) of a single satisfiable `Range`, "unsatisfiable", or None to send the whole file."""
    match = RANGE_RE.match(request.headers.get("Range", "").strip())
    if_range = request.headers.get("If-Range")
    if not match or (if_range and if_range != etag) or match.groups() == ("", ""):
        return None
    first, last = (_position(n) if n else None for n in match.groups())
    if first is None:
        start, end = max(0, size - last), size - 1
    else:
        start, end = first, min(last, size - 1) if last is not None else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end


def _position(digits: str) -> int:
    """A Range number by its value. Python refuses int() of more than 4300 digits; any number past 2**63 is
    past the end of every file, so it counts as that."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else 2**63


def _with_headers(response, headers: dict):
    for name, value in headers.items():
        response[name] = value
    return response


@require_safe
def download_relay(request, ticket: str, path: str):
    """Redirect to a fresh signed URL; the ticket names the file and the user it was issued to, and the gate
    decides again on every fetch (so a revocation stops a running `wget -i` at once)."""
    opened = downloads.relay_open(ticket, max_age=max(settings.SIGNED_URL_TTL, settings.GRANT_URL_TTL))
    if opened is None:
        return json_error(
            "invalid_signature", _("This download link is invalid or has expired; ask the portal for a fresh one."), 403
        )
    file_id, user_id = opened
    file = ModelFile.objects.select_related("release").filter(pk=file_id, path=path).first()
    if file is None:
        return json_error("not_found", _("Not found."), 404)
    user = User.objects.filter(pk=user_id).first() if user_id else None
    actor = Actor(user=user, credential="relay", ip=client_ip(request))
    decision = downloads.authorize(
        actor=actor, release=file.release, via=DownloadEvent.Via.RELAY, path=file.path, revision_id=file.revision_id
    )
    if not decision.allowed:
        return json_error(decision.code, decision.detail, decision.status)
    try:
        location = selectors.release_location(release=file.release, preferred=request.GET.get("mirror"))
    except UnknownMirror:
        return json_error("unknown_mirror", downloads.unknown_mirror_detail(), 400)
    response = download_redirect(downloads.serve_file(decision, file, base_url=base_url(request), location=location))
    response["X-Mirror"] = location.name
    return downloads.with_advisories(response, downloads.advisories_for(decision, file.revision_id))
