"""The reviewer page that traces a leaked copy of a marked release (release managers; docs/marking.md)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.http import Http404
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from .. import selectors, services
from ..http import actor_for
from .review import reviewer_required

# What one page submission may upload: a few shards of a copy (larger copies: `manage.py trace_copy <dir>`).
MAX_UPLOAD_FILES = 64
MAX_UPLOAD_BYTES = 2 * 1024**3


def _save_uploads(uploads, root: Path) -> list[tuple[str, Path]]:
    saved = []
    for number, upload in enumerate(uploads):
        target = root / str(number)
        with open(target, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        saved.append((Path(upload.name).name, target))
    return saved


@reviewer_required
@require_http_methods(["GET", "POST"])
def review_trace(request):
    """Trace a copy: upload its safetensors files, or paste their hashes (SHA256SUMS) or a manifest."""
    if not selectors.is_release_manager(request.user):
        raise Http404
    context = {"max_files": MAX_UPLOAD_FILES, "hashes": ""}
    if request.method == "POST":
        uploads = request.FILES.getlist("files")
        text = request.POST.get("hashes", "")[: 4 * 1024 * 1024]
        context["hashes"] = text
        status = 200
        tmp = tempfile.mkdtemp(prefix="trace-upload-")
        try:
            if len(uploads) > MAX_UPLOAD_FILES or sum(u.size for u in uploads) > MAX_UPLOAD_BYTES:
                raise services.ServiceError(
                    _("Upload at most %(n)d files and 2 GiB at once; trace larger copies with manage.py trace_copy.")
                    % {"n": MAX_UPLOAD_FILES},
                    "trace_too_many",
                )
            hashes = services.manifest_entries(text) if text.strip() else []
            files = _save_uploads(uploads, Path(tmp))
            result = services.copy_trace(actor=actor_for(request), hashes=hashes, files=files, source="page")
            context["result"] = result.as_dict()
            context["fingerprint"] = result.fingerprint()
        except services.ServiceError as exc:
            context["error"] = str(exc)
            status = exc.status
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return render(request, "access/review/trace.html", context, status=status)
    return render(request, "access/review/trace.html", context)
