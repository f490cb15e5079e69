"""Hugging Face Hub-compatible endpoints, so `HF_ENDPOINT=<portal> hf download <repo_id>` works.

Shaped after what huggingface_hub (checked against 2.4.0) reads on its download paths:

- `snapshot_download` calls `/api/models/{repo}/revision/main` for `sha` only, lists
  `/api/models/{repo}/tree/{sha}?recursive=true` (pages through `Link: <…>; rel="next"`), then runs
  `hf_hub_download` per file at that sha.
- `hf_hub_download` never GETs `/resolve`: it sends a HEAD, follows redirects that stay on the same origin
  (LocalStorage's signed URLs are on the portal, and its file view answers with the same X-* headers), stops at
  one to another origin (S3), and reads `X-Repo-Commit`, `X-Linked-Etag` (the blob's cache name) and
  `X-Linked-Size` from the last response. It then GETs the `Location` (so it must be absolute) itself.
- Errors are told apart by `X-Error-Code` alone (a HEAD has no body): `GatedRepo` → GatedRepoError, and
  likewise `RepoNotFound`, `EntryNotFound`, `RevisionNotFound`. The gate's refusals are `GatedRepo`, except a
  withdrawn revision's (`revision_withdrawn`), which is `RevisionNotFound`: the CLI would tell a holder that the
  repository "requires approval".

Every file is described as a Git LFS object whose oid is the file's SHA-256, so the client's cache names blobs
by the checksum the portal publishes everywhere else. No Xet headers are sent: the plain HTTP path is used.
Model info is public like the v1 catalog; the tree and the files of a gated release need an active grant.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from urllib.parse import urlencode

from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import downloads, inputs, selectors
from ..http import actor_for, base_url, download_redirect
from ..models import DownloadEvent, ModelRelease
from ..storage import LocalStorage, UnknownMirror
from ..text import printable
from .errors import ApiError

DEFAULT_BRANCH = "main"
# The Hub's own cap for a non-expanded tree page; 992 shards fit in one.
TREE_PAGE_SIZE = 1000
# huggingface_hub reports a 401 carrying this exact message as a credentials problem, not a missing repo.
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


def header_text(text: str) -> str:
    """A message fit for one header line, sent as UTF-8 bytes: Django writes header strings as Latin-1, and httpx
    (so huggingface_hub) reads UTF-8. Messages quote paths and revisions from the URL, and gunicorn answers 500
    rather than send a header holding a control character, so none is kept."""
    return printable(text)[:500].encode().decode("latin-1")


def hf_error(detail: str, code: str, status: int, error_code: str, headers: dict | None = None) -> ApiError:
    return ApiError(
        detail,
        code,
        status,
        headers={"X-Error-Code": error_code, "X-Error-Message": header_text(detail), **(headers or {})},
    )


def entry_not_found(commit: str, detail: str) -> ApiError:
    return hf_error(detail, "not_found", 404, "EntryNotFound", {"X-Repo-Commit": commit})


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_info(sha256: str, size: int) -> tuple[str, int]:
    """(blob id, size) of the Git LFS pointer file that stands for this file in a Hub repository."""
    pointer = LFS_POINTER.format(sha256=sha256, size=size).encode()
    return git_blob_id(pointer), len(pointer)


def iso(dt) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HfApiView(APIView):
    """Bearer token or session, throttled like /api/v1; errors carry the Hub's X-Error-* headers and an
    `error` key (what huggingface_hub shows) next to the portal's `code` and `detail`."""

    schema = None  # a third-party protocol, documented by huggingface_hub; kept out of /api/schema

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(response.data, dict) and "detail" in response.data:
            response.data["error"] = response.data["detail"]
        if "X-Error-Message" not in response:
            credentials = isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated)
            detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
            response["X-Error-Message"] = INVALID_CREDENTIALS if credentials else header_text(detail)
        return response

    def release(self, repo_id: str) -> ModelRelease:
        release = selectors.release_get(repo_id=repo_id, user=self.request.user)
        if release is None:
            raise hf_error(_("No release named %(repo)s.") % {"repo": repo_id}, "not_found", 404, "RepoNotFound")
        return release

    def check_revision(self, release: ModelRelease, revision: str) -> selectors.Revision:
        """`main` (the latest published revision) or the 40-hex id of any published revision."""
        try:
            return selectors.release_revision(release=release, revision=revision)
        except selectors.UnknownRevision:
            raise hf_error(
                _("%(repo)s has no revision %(rev)s; use main or %(sha)s.")
                % {"repo": release.repo_id, "rev": revision, "sha": release.revision or DEFAULT_BRANCH},
                "not_found",
                404,
                "RevisionNotFound",
            ) from None

    def require_access(
        self, release: ModelRelease, path: str = "", revision_id: int | None = None
    ) -> downloads.Verdict:
        decision = downloads.authorize(
            actor=actor_for(self.request), release=release, via=DownloadEvent.Via.HF, path=path, revision_id=revision_id
        )
        if not decision.allowed:
            hub_code = "RevisionNotFound" if decision.code == "revision_withdrawn" else "GatedRepo"
            raise hf_error(decision.detail, decision.code, decision.status, hub_code)
        return decision


class ModelInfoApi(HfApiView):
    """`HfApi.model_info`: what the client needs is `sha`; the rest mirrors the Hub's fields."""

    def get(self, request, repo_id, revision=DEFAULT_BRANCH):
        release = self.release(repo_id)
        rev = self.check_revision(release, revision)
        siblings = []
        marks = None
        if release.marking:  # a holder sees their own variants' hashes; nobody else sees a marked file's
            marks = downloads.access_state(user=request.user, release=release, record_codeword=True).marks
        for path, size, sha256 in file_listing(release, rev, marks):
            if sha256 is None:
                siblings.append({"rfilename": path, "size": size})
                continue
            blob_id, pointer_size = lfs_info(sha256, size)
            siblings.append(
                {
                    "rfilename": path,
                    "size": size,
                    "blobId": blob_id,
                    "lfs": {"sha256": sha256, "size": size, "pointerSize": pointer_size},
                }
            )
        data = {
            "_id": release.repo_id,
            "id": release.repo_id,
            "modelId": release.repo_id,
            "author": release.namespace,
            "sha": rev.sha or None,
            "private": False,
            "gated": "manual" if release.is_gated else False,
            "disabled": False,
            "createdAt": iso(release.created_at),
            "lastModified": iso(rev.row.published_at if rev.row else release.updated_at),
            "tags": [],
            "siblings": siblings,
        }
        if release.license is not None:
            data["cardData"] = {"license": "other", "license_name": release.license.slug}
        return Response(data)


class TreeApi(HfApiView):
    """`HfApi.list_repo_tree`: files (as LFS objects) and the folders their paths imply, in pages."""

    def get(self, request, repo_id, revision, path=None):
        release = self.release(repo_id)
        rev = self.check_revision(release, revision)
        decision = self.require_access(release, revision_id=rev.row.pk if rev.row else None)
        prefix = (path or "").strip("/")
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        entries = tree_entries(release, prefix=prefix, recursive=recursive, revision=rev, marks=decision.marks)
        if entries is None:
            raise entry_not_found(
                rev.sha, _("No folder %(path)s in %(repo)s.") % {"path": prefix, "repo": release.repo_id}
            )
        start = inputs.integer(request.query_params.get("cursor") or 0, name="cursor", low=0, high=inputs.MAX_INT)
        response = Response(entries[start : start + TREE_PAGE_SIZE])
        if start + TREE_PAGE_SIZE < len(entries):
            query = request.query_params.copy()
            query["cursor"] = str(start + TREE_PAGE_SIZE)
            response["Link"] = f'<{request.build_absolute_uri(request.path)}?{urlencode(query)}>; rel="next"'
        return response


def file_listing(release: ModelRelease, revision: selectors.Revision, marks) -> list[tuple[str, int, str]]:
    """(path, size, sha256) of a revision's files as this person receives them (their variants in a marked
    release), so the client verifies what it downloads."""
    files = selectors.release_files(release=release, revision=revision.row)
    rows = downloads.personal_rows(downloads.manifest_rows(files), marks, hide=True)
    return [(row[0], row[1], row[2]) for row in rows]


def tree_entries(
    release: ModelRelease, *, prefix: str, recursive: bool, revision: selectors.Revision, marks=None
) -> list[dict] | None:
    """Entries under prefix ("" for the root) sorted by path, or None when prefix is not a folder."""
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict] = {}
    found = not prefix
    for path, size, sha256 in file_listing(release, revision, marks):
        if sha256 is None:
            continue  # never: the tree is listed only for people who may download
        if not path.startswith(base):
            continue
        found = True
        parts = path[len(base) :].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            folder = base + "/".join(parts[:depth])
            oid = hashlib.sha1(f"{revision.sha}:{folder}".encode(), usedforsecurity=False).hexdigest()
            entries.setdefault(folder, {"type": "directory", "path": folder, "oid": oid, "size": 0})
        if recursive or len(parts) == 1:
            blob_id, pointer_size = lfs_info(sha256, size)
            entries[path] = {
                "type": "file",
                "path": path,
                "size": size,
                "oid": blob_id,
                "lfs": {"oid": sha256, "size": size, "pointerSize": pointer_size},
            }
    return sorted(entries.values(), key=lambda e: e["path"]) if found else None


class ResolveApi(HfApiView):
    """`GET|HEAD /{repo_id}/resolve/{rev}/{path}`: 302 to a fresh signed URL, with the metadata headers.

    huggingface_hub only sends the HEAD (then fetches the signed URL itself), other tools (curl -L, wget) only
    the GET, so both record a download; a client sending both is counted twice."""

    def get(self, request, repo_id, revision, path):
        release = self.release(repo_id)
        rev = self.check_revision(release, revision)
        file = selectors.release_file_get(release=release, path=path, revision=rev.row)
        if file is None:
            raise entry_not_found(rev.sha, _("No file %(path)s in %(repo)s.") % {"path": path, "repo": release.repo_id})
        decision = self.require_access(release, path=file.path, revision_id=file.revision_id)
        try:
            location = selectors.release_location(release=release, preferred=request.query_params.get("mirror"))
        except UnknownMirror:
            raise ApiError(downloads.unknown_mirror_detail(), "unknown_mirror", 400) from None
        url = downloads.serve_file(decision, file, base_url=base_url(request), location=location)
        if isinstance(downloads.location_storage(location), LocalStorage):
            # The client follows a same-origin redirect and reads X-Repo-Commit from the storage response; a file
            # unchanged between revisions is one object, so the storage view is told which revision was asked for.
            url += "?" + urlencode({"revision": rev.sha})
        response = downloads.with_advisories(
            download_redirect(url), downloads.advisories_for(decision, file.revision_id)
        )
        response["X-Mirror"] = location.name
        response["X-Repo-Commit"] = rev.sha
        what = downloads.served(decision, file)  # the person's variant of a marked file
        response["X-Linked-Etag"] = f'"{what.sha256}"'
        response["X-Linked-Size"] = str(what.size)
        response["ETag"] = f'"{what.sha256}"'
        return response
