"""End-to-end tests of access/client/download.py, run as a subprocess against an in-process fake portal + storage.

ThreadingHTTPServers on 127.0.0.1 (different ports, so different origins): the "portal" serves the manifest
(and a few files under its own /storage/), the "storage" server plays S3 presigned URLs, and "mirror" a second
copy when a test lists mirrors. All record every request and can be switched into misbehaviours. No database,
no Django.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "access" / "client" / "download.py"
REPO = "facebook/opt-test"
TOKEN = "tok-secret-123"
S3_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


def blob(seed: str, size: int) -> bytes:
    """Deterministic, non-repeating test content."""
    out, counter = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class Backend:
    """State shared by both fake servers, plus the switches the tests flip."""

    def __init__(self):
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.on_portal: set[str] = set()  # served from the portal's own /storage/ instead of the storage server
        self.requests: list[tuple[str, str, dict]] = []  # (server, path, headers)
        self.manifest_requests = 0
        self.require_token = False
        self.portal_error: tuple[int, str, str] | None = None
        self.manifest_429 = 0  # answer this many manifest requests with 429 first
        self.min_valid_sig = 0  # storage URLs signed by an earlier manifest answer 403 (expired)
        self.file_429: dict[str, int] = {}
        self.ignore_range = False
        self.html_for: set[str] = set()
        self.wrong_length_for: set[str] = set()
        self.stall_after: dict[str, int] = {}  # send this many bytes, then hang until released
        self.close_after: dict[str, int] = {}  # send this many bytes and drop the connection (once)
        self.release = threading.Event()
        self.raw_manifest_files: list[dict] | None = None
        self.redirect_manifest = False
        self.url_factory = None  # (path, sig) -> URL, to point the manifest at a real S3 server
        self.manifest_delay: dict[int, float] = {}  # manifest answer number -> seconds to wait before sending
        self.piece_length = 0  # list piece hashes of this length in the manifest
        self.mirrors: list[str] = []  # servers listed as mirrors ("storage", "mirror"), in order
        self.corrupt: dict[tuple[str, str], set[int]] = {}  # (server, path) -> byte offsets it serves flipped
        self.down: set[str] = set()  # servers answering 503 to every file request
        self.portal_url = self.storage_url = self.mirror_url = ""

    def file_url(self, path: str, sig: int, server: str = "") -> str:
        if self.url_factory:
            return self.url_factory(path, sig)
        if server:
            base = (self.mirror_url if server == "mirror" else self.storage_url) + "/bucket"
        else:
            base = self.portal_url + "/storage" if path in self.on_portal else self.storage_url + "/bucket"
        return f"{base}/{urllib.parse.quote(path)}?X-Amz-Signature=sig{sig}&X-Amz-Expires=60"

    def manifest(self, sig: int) -> dict:
        files = self.raw_manifest_files
        if files is None:
            files = [self.entry(p, d, sig) for p, d in sorted(self.files.items())]
        return {"repo_id": REPO, "revision": "a" * 40, "expires_at": "2030-01-01T00:00:00Z", "files": files}

    def entry(self, path: str, data: bytes, sig: int) -> dict:
        entry = {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if self.mirrors:
            entry["urls"] = [{"mirror": m, "url": self.file_url(path, sig, m)} for m in self.mirrors]
            entry["url"] = entry["urls"][0]["url"]
        else:
            entry["url"] = self.file_url(path, sig)
        if self.piece_length:
            step = self.piece_length
            pieces = [hashlib.sha256(data[i : i + step]).hexdigest() for i in range(0, len(data), step)]
            entry["pieces"] = {"length": step, "sha256": pieces}
        return entry

    def served(self, server: str, path: str) -> bytes:
        data = bytearray(self.files[path])
        for offset in self.corrupt.get((server, path), ()):
            data[offset] ^= 0xFF
        return bytes(data)

    def ranges(self, server: str, path: str) -> list:
        """The Range header of every request this server got for the file (None for a whole-file GET)."""
        quoted = "/bucket/" + urllib.parse.quote(path) + "?"
        return [h.get("range") for p, h in self.seen(server) if p.startswith(quoted)]

    def seen(self, server: str) -> list[tuple[str, dict]]:
        with self.lock:
            return [(path, headers) for who, path, headers in self.requests if who == server]


def make_handler(backend: Backend, server: str):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_json(self, status: int, payload: dict, headers: dict | None = None):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            with backend.lock:
                backend.requests.append((server, self.path, {k.lower(): v for k, v in self.headers.items()}))
            if url.path.endswith("/manifest"):
                return self.manifest()
            prefix = "/storage/" if server == "portal" else "/bucket/"
            if url.path.startswith(prefix):
                return self.file(urllib.parse.unquote(url.path[len(prefix) :]), urllib.parse.parse_qs(url.query))
            self.send_json(404, {"code": "not_found", "detail": "Not found."})

        def manifest(self):
            if server == "portal" and backend.redirect_manifest:
                self.send_response(302)
                self.send_header("Location", backend.storage_url + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with backend.lock:
                backend.manifest_requests += 1
                sig, throttle = backend.manifest_requests, backend.manifest_429 > 0
                backend.manifest_429 -= 1 if throttle else 0
            if throttle:
                return self.send_json(429, {"code": "throttled", "detail": "Slow down."}, {"Retry-After": "1"})
            if backend.require_token and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self.send_json(401, {"code": "not_authenticated", "detail": "This release is gated."})
            if backend.portal_error:
                status, code, detail = backend.portal_error
                return self.send_json(status, {"code": code, "detail": detail})
            manifest = backend.manifest(sig)
            time.sleep(backend.manifest_delay.get(sig, 0))
            self.send_json(200, manifest)

        def file(self, path: str, query: dict):
            if path not in backend.files:
                return self.send_json(404, {"code": "not_found", "detail": "No such key."})
            if server in backend.down:
                return self.send_json(503, {"code": "unavailable", "detail": "Down."})
            data = backend.served(server, path)
            sig = int(query.get("X-Amz-Signature", ["sig0"])[0][3:])
            if sig < backend.min_valid_sig:
                if server == "portal":
                    return self.send_json(403, {"code": "invalid_signature", "detail": "Link expired."})
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(S3_EXPIRED)))
                self.end_headers()
                self.wfile.write(S3_EXPIRED)
                return
            with backend.lock:
                throttle = backend.file_429.get(path, 0) > 0
                if throttle:
                    backend.file_429[path] -= 1
            if throttle:
                return self.send_json(429, {"code": "throttled", "detail": "Slow down."}, {"Retry-After": "1"})
            if path in backend.html_for:
                page = b"<html><body><h1>Please log in</h1></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            start, end = 0, len(data) - 1
            match = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if match and not backend.ignore_range:
                start = int(match.group(1))
                end = min(int(match.group(2)), end) if match.group(2) else end
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start : end + 1]
            length = len(body) + (10 if path in backend.wrong_length_for else 0)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.send_body(path, body)

        def send_body(self, path: str, body: bytes):
            with backend.lock:
                stall = backend.stall_after.get(path)
                close = backend.close_after.pop(path, None)
            cut = stall if stall is not None else close
            try:
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    if stall is not None:
                        backend.release.wait(20)
                    return  # the connection closes before the promised Content-Length
                for i in range(0, len(body), 64 * 1024):
                    self.wfile.write(body[i : i + 64 * 1024])
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@pytest.fixture
def backend():
    state = Backend()
    servers = {
        name: ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state, name))
        for name in ("portal", "storage", "mirror")
    }
    for server in servers.values():
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.portal_url = f"http://127.0.0.1:{servers['portal'].server_address[1]}"
    state.storage_url = f"http://127.0.0.1:{servers['storage'].server_address[1]}"
    state.mirror_url = f"http://127.0.0.1:{servers['mirror'].server_address[1]}"
    state.files = {
        "config.json": b'{"model_type": "opt"}\n',
        "checkpoint_last-model_part-0-shard0.pt": blob("part0", 300_000),
        "checkpoint_last-model_part-1-shard0.pt": blob("part1", 250_000),
        "tokenizer/vocab.json": blob("vocab", 20_000),
        "empty.txt": b"",
    }
    state.on_portal = {"tokenizer/vocab.json"}
    yield state
    state.release.set()
    for server in servers.values():
        server.shutdown()
        server.server_close()


def client_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("PORTAL_")}
    env.update({"PORTAL_DOWNLOAD_BACKOFF": "0.05", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def client_cmd(backend: Backend, target: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        REPO,
        "--dir",
        str(target),
        "--portal",
        backend.portal_url,
        "--timeout",
        "5",
        "--retries",
        "3",
        *args,
    ]


def run_client(backend: Backend, target: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        client_cmd(backend, target, *args), capture_output=True, text=True, timeout=60, env=env or client_env()
    )


def transferred(result: subprocess.CompletedProcess) -> int:
    match = re.search(r"^transferred_bytes=(\d+)$", result.stdout, re.M)
    assert match, result.stdout + result.stderr
    return int(match.group(1))


def assert_verified(backend: Backend, target: Path, paths=None) -> None:
    for path in paths or backend.files:
        assert (target / path).read_bytes() == backend.files[path], path
        assert not (target / (path + ".part")).exists()


def sha256sum_check(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=target, capture_output=True, text=True)


def test_full_download_verifies_and_writes_sha256sums(backend, tmp_path):
    target = tmp_path / "opt"
    result = run_client(backend, target, "--jobs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, target)
    assert transferred(result) == sum(len(d) for d in backend.files.values())
    assert "5 downloaded, 0 skipped (already verified), 0 failed" in result.stdout
    if shutil.which("sha256sum"):
        check = sha256sum_check(target)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.count(": OK") == len(backend.files)
    lines = (target / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in lines) == sorted(backend.files)

    again = run_client(backend, target)  # everything verified locally: nothing moves
    assert again.returncode == 0, again.stdout + again.stderr
    assert transferred(again) == 0
    assert "0 downloaded, 5 skipped (already verified), 0 failed" in again.stdout


def test_it_prints_one_progress_line_and_a_line_per_file_only_with_verbose(backend, tmp_path):
    result = run_client(backend, tmp_path / "quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    progress = [line for line in result.stdout.splitlines() if " progress: " in line]
    assert len(progress) == 1, result.stdout
    assert re.search(r"progress: 5/5 files  \S+ \S+ / \S+ \S+  \S+ \S+/s  ETA \S+$", progress[0]), progress
    assert not re.search(r" (start|done|skip) ", result.stdout), result.stdout
    verbose = run_client(backend, tmp_path / "loud", "--verbose")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    for path in backend.files:
        assert f"start {path} (" in verbose.stdout and f"done {path} (sha256 verified)" in verbose.stdout


def test_resume_after_killed_download(backend, tmp_path):
    target = tmp_path / "opt"
    name = "checkpoint_last-model_part-0-shard0.pt"
    size, half = len(backend.files[name]), len(backend.files[name]) // 2
    backend.stall_after[name] = half
    proc = subprocess.Popen(
        client_cmd(backend, target, "--include", name, "--timeout", "30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(),
    )
    part = target / (name + ".part")
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size >= half) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=10)
    assert part.stat().st_size == half
    assert not (target / name).exists()

    backend.stall_after.clear()
    backend.release.set()
    result = run_client(backend, target, "--include", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert transferred(result) == size - half < size
    assert_verified(backend, target, [name])
    assert backend.seen("storage")[-1][1].get("range") == f"bytes={half}-"


def test_dropped_connection_is_resumed_with_range_in_the_same_run(backend, tmp_path):
    name = "checkpoint_last-model_part-1-shard0.pt"
    backend.close_after[name] = 100_000
    result = run_client(backend, tmp_path, "--include", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path, [name])
    assert transferred(result) == len(backend.files[name])
    assert [h.get("range") for _, h in backend.seen("storage")] == [None, "bytes=100000-"]


def test_server_ignoring_range_restarts_cleanly(backend, tmp_path):
    name = "checkpoint_last-model_part-0-shard0.pt"
    data = backend.files[name]
    (tmp_path / (name + ".part")).write_bytes(data[:1000])
    backend.ignore_range = True
    result = run_client(backend, tmp_path, "--include", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ignored the Range request" in result.stdout
    assert transferred(result) == len(data)
    assert_verified(backend, tmp_path, [name])


def test_corrupted_complete_file_is_detected_and_refetched(backend, tmp_path):
    name = "checkpoint_last-model_part-1-shard0.pt"
    bad = bytearray(backend.files[name])
    bad[1234] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(bad))
    result = run_client(backend, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "corrupted local file" in result.stdout
    assert_verified(backend, tmp_path)


def test_wrong_partial_content_is_discarded_after_hash_mismatch(backend, tmp_path):
    name = "checkpoint_last-model_part-1-shard0.pt"
    (tmp_path / (name + ".part")).write_bytes(b"\0" * 5000)  # resumes, then the hash cannot match
    result = run_client(backend, tmp_path, "--include", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sha256 mismatch" in result.stdout
    assert_verified(backend, tmp_path, [name])


def test_html_error_page_is_refused(backend, tmp_path):
    name = "checkpoint_last-model_part-0-shard0.pt"
    backend.html_for.add(name)
    result = run_client(backend, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "HTML page" in result.stderr and name in result.stderr
    assert not (tmp_path / name).exists()
    assert_verified(backend, tmp_path, [p for p in backend.files if p != name])
    assert "4 downloaded, 0 skipped (already verified), 1 failed" in result.stdout


def test_wrong_content_length_is_refused(backend, tmp_path):
    name = "config.json"
    backend.wrong_length_for.add(name)
    result = run_client(backend, tmp_path, "--include", name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Content-Length" in result.stderr
    assert not (tmp_path / name).exists()


def test_expired_urls_trigger_one_fresh_manifest_per_wave(backend, tmp_path):
    backend.min_valid_sig = 2  # the URLs of the first manifest are already expired
    result = run_client(backend, tmp_path, "--jobs", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert backend.manifest_requests == 2
    assert_verified(backend, tmp_path)
    refused = [p for p, _ in backend.seen("storage") if "sig1" in p]
    assert refused, "the first, expired URLs were tried"


def test_fresh_manifests_are_of_the_revision_the_run_started_on(backend, tmp_path):
    backend.min_valid_sig = 2
    result = run_client(backend, tmp_path, "--jobs", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = [p for p, _ in backend.seen("portal") if "/manifest" in p]
    assert "revision=" not in manifests[0]
    assert all(f"revision={'a' * 40}" in p for p in manifests[1:]) and len(manifests) == 2
    state = json.loads((tmp_path / ".portal-download.json").read_text())
    assert state == {"repo_id": REPO, "revision": "a" * 40, "complete": True}


def test_an_unfinished_folder_resumes_its_revision_and_a_finished_one_updates(backend, tmp_path):
    (tmp_path / ".portal-download.json").write_text(json.dumps({"repo_id": REPO, "revision": "b" * 40}))
    pinned = run_client(backend, tmp_path, "--include", "config.json")
    assert pinned.returncode == 2  # the fake portal only has revision aaaa…: the client refuses another one
    assert f"Resuming revision {'b' * 40}" in pinned.stdout
    assert f"revision={'b' * 40}" in next(p for p, _ in backend.seen("portal") if "/manifest" in p)
    assert "not 'bbbb" in pinned.stderr
    (tmp_path / ".portal-download.json").write_text(
        json.dumps({"repo_id": REPO, "revision": "b" * 40, "complete": True})
    )
    updated = run_client(backend, tmp_path)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert f"Updating from revision {'b' * 40} to {'a' * 40}" in updated.stdout
    assert "invalid --revision" in run_client(backend, tmp_path, "--revision", "v2").stderr


def test_429_with_retry_after_is_honoured(backend, tmp_path):
    name = "config.json"
    backend.manifest_429 = 1
    backend.file_429[name] = 1
    started = time.monotonic()
    result = run_client(backend, tmp_path, "--include", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 2  # one Retry-After: 1 for the manifest, one for the file
    assert backend.manifest_requests == 2
    assert_verified(backend, tmp_path, [name])


def test_portal_refusal_stops_with_detail(backend, tmp_path):
    backend.portal_error = (403, "revoked", "Your grant was revoked by the data steward on 2024-05-01.")
    result = run_client(backend, tmp_path / "opt")
    assert result.returncode == 2
    assert "Your grant was revoked by the data steward" in result.stderr
    assert not (tmp_path / "opt").exists()


def test_token_goes_to_the_portal_only(backend, tmp_path):
    backend.require_token = True
    missing = run_client(backend, tmp_path)
    assert missing.returncode == 2
    assert "This release is gated" in missing.stderr and "PORTAL_TOKEN" in missing.stderr

    result = run_client(backend, tmp_path, env=client_env(PORTAL_TOKEN=TOKEN))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path)
    portal = backend.seen("portal")
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for p, h in portal if "/manifest" in p)
    assert all("authorization" not in h for p, h in portal if p.startswith("/storage/"))
    assert backend.seen("storage") and all("authorization" not in h for _, h in backend.seen("storage"))


def test_redirect_to_another_origin_drops_authorization(backend, tmp_path):
    backend.redirect_manifest = True  # the portal 302s the manifest to the storage server's origin
    result = run_client(backend, tmp_path, "--token", TOKEN, "--include", "config.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert any("authorization" in h for p, h in backend.seen("portal") if "/manifest" in p)
    assert all("authorization" not in h for _, h in backend.seen("storage"))


def test_include_filters(backend, tmp_path):
    result = run_client(backend, tmp_path, "--include", "checkpoint_*", "--include", "*.json")
    assert result.returncode == 0, result.stdout + result.stderr
    wanted = [p for p in backend.files if p.startswith("checkpoint_") or p.endswith(".json")]
    assert_verified(backend, tmp_path, wanted)
    assert not (tmp_path / "empty.txt").exists()
    assert len((tmp_path / "SHA256SUMS").read_text().splitlines()) == len(wanted) == 4

    none = run_client(backend, tmp_path, "--include", "*.safetensors")
    assert none.returncode == 2 and "none match --include" in none.stderr


@pytest.mark.parametrize("evil", ["../evil", "/tmp/evil", "a/../../evil", "a\\..\\evil", "nul\x00byte"])
def test_path_traversal_in_manifest_is_refused(backend, tmp_path, evil):
    target = tmp_path / "inside" / "opt"
    data = b"pwned"
    good = backend.manifest(1)["files"][0]
    backend.raw_manifest_files = [
        good,
        {"path": evil, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "url": good["url"]},
    ]
    result = run_client(backend, target)
    assert result.returncode == 2
    assert "refusing the manifest" in result.stderr
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []
    assert backend.seen("storage") == []


def test_not_enough_disk_space(backend, tmp_path):
    good = backend.manifest(1)["files"][0]
    backend.raw_manifest_files = [dict(good, size=10**18)]
    result = run_client(backend, tmp_path)
    assert result.returncode == 1
    assert "not enough free disk space" in result.stderr
    assert backend.seen("storage") == []


def test_real_s3_presigned_urls_resume_and_expire(backend, tmp_path):
    """Against nanio (verifies SigV4 and expiry): Range on a presigned URL, and a fresh manifest once it expired."""
    nanio = pytest.importorskip("tests.support.nanio")
    s3_server = nanio.start_nanio()
    try:
        s3 = s3_server.client()
        data = blob("s3", 600_000)
        s3.put_object(Bucket=s3_server.bucket, Key="opt/model.bin", Body=data, ContentType="application/octet-stream")
        backend.files = {"model.bin": data}
        backend.url_factory = lambda path, sig: s3.generate_presigned_url(
            "get_object", Params={"Bucket": s3_server.bucket, "Key": f"opt/{path}"}, ExpiresIn=1 if sig == 1 else 300
        )
        backend.manifest_delay[1] = 2.2  # the first manifest's URLs have expired by the time it arrives
        (tmp_path / "model.bin.part").write_bytes(data[:250_000])
        result = run_client(backend, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "AccessDenied" in result.stdout or "expired" in result.stdout
        assert backend.manifest_requests == 2
        assert transferred(result) == len(data) - 250_000
        assert_verified(backend, tmp_path)
    finally:
        nanio.stop_nanio(s3_server)


def test_version_and_help():
    version = subprocess.run([sys.executable, str(SCRIPT), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and re.search(r"\d+\.\d+\.\d+", version.stdout)
    usage = subprocess.run([sys.executable, str(SCRIPT), "-h"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--include" in usage.stdout and "PORTAL_TOKEN" in usage.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "../etc"], capture_output=True, text=True)
    assert bad.returncode == 2


# --- pieces and mirrors -------------------------------------------------------------------------------

SHARD = "checkpoint_last-model_part-0-shard0.pt"  # 300_000 bytes
PIECE = 16 * 1024


def piece_range(index: int, size: int = 300_000) -> str:
    return f"bytes={index * PIECE}-{min((index + 1) * PIECE, size) - 1}"


def test_a_bad_piece_is_fetched_again_alone(backend, tmp_path):
    backend.piece_length = PIECE
    backend.corrupt[("storage", SHARD)] = {5 * PIECE + 100}
    # The first whole-file GET serves the flipped byte; the piece asked for again comes back right.
    seen = {"n": 0}
    served = backend.served

    def once(server, path):
        if path == SHARD and server == "storage":
            seen["n"] += 1
            if seen["n"] > 1:
                return backend.files[path]
        return served(server, path)

    backend.served = once
    result = run_client(backend, tmp_path, "--include", SHARD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path, [SHARD])
    assert backend.ranges("storage", SHARD) == [None, piece_range(5)]
    assert transferred(result) == 300_000 + PIECE  # the file once, and the bad piece again
    assert "piece 5 (bytes 81920-98303) from storage does not match its SHA-256" in result.stdout


def test_a_bad_piece_comes_from_the_next_mirror_and_the_rest_from_the_first(backend, tmp_path):
    backend.piece_length = PIECE
    backend.mirrors = ["storage", "mirror"]
    backend.corrupt[("storage", SHARD)] = {7 * PIECE + 3}
    result = run_client(backend, tmp_path, "--jobs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path)
    assert backend.ranges("storage", SHARD) == [None]  # one stream, read to the end
    assert backend.ranges("mirror", SHARD) == [piece_range(7)]
    assert [p for p, _ in backend.seen("mirror") if SHARD not in p] == []  # nothing else came from the mirror
    total = sum(len(d) for d in backend.files.values())
    assert f"transferred_bytes[storage]={total}" in result.stdout
    assert f"transferred_bytes[mirror]={PIECE}" in result.stdout
    assert "piece 7 fetched again from mirror, verified" in result.stdout


def test_a_mirror_that_is_down_is_passed_over(backend, tmp_path):
    backend.piece_length = PIECE
    backend.mirrors = ["storage", "mirror"]
    backend.down.add("storage")
    result = run_client(backend, tmp_path, "--retries", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path)
    assert "storage answered HTTP 503 on storage; trying mirror" in result.stdout
    assert len(backend.seen("storage")) == len(backend.files) - 1  # empty.txt needs no request


def test_a_mirror_serving_bad_pieces_is_left_for_the_rest_of_the_file(backend, tmp_path):
    backend.piece_length = PIECE
    backend.mirrors = ["storage", "mirror"]
    backend.corrupt[("storage", SHARD)] = {i * PIECE for i in range(1, 19)}  # everything after the first piece
    result = run_client(backend, tmp_path, "--include", SHARD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path, [SHARD])
    # Three bad pieces fetched again one by one, then the rest of the file in one request from the mirror.
    assert backend.ranges("mirror", SHARD) == [piece_range(1), piece_range(2), piece_range(3), f"bytes={4 * PIECE}-"]
    assert "carrying on from mirror" in result.stdout


def test_a_piece_bad_on_every_mirror_fails_the_file(backend, tmp_path):
    backend.piece_length = PIECE
    backend.mirrors = ["storage", "mirror"]
    backend.corrupt[("storage", SHARD)] = backend.corrupt[("mirror", SHARD)] = {2 * PIECE}
    result = run_client(backend, tmp_path, "--include", SHARD)
    assert result.returncode == 1
    assert "piece 2 does not match its SHA-256 on any mirror" in result.stderr
    assert not (tmp_path / SHARD).exists()
    assert (tmp_path / (SHARD + ".part")).stat().st_size == 2 * PIECE  # the verified pieces are kept


def test_a_corrupt_piece_in_a_partial_file_is_cut_off_before_resuming(backend, tmp_path):
    backend.piece_length = PIECE
    data = bytearray(backend.files[SHARD][: 6 * PIECE + 500])
    data[4 * PIECE + 9] ^= 0x01
    (tmp_path / (SHARD + ".part")).write_bytes(bytes(data))
    result = run_client(backend, tmp_path, "--include", SHARD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_verified(backend, tmp_path, [SHARD])
    assert "piece 4 of the partial file is corrupt; resuming there" in result.stdout
    assert backend.ranges("storage", SHARD) == [f"bytes={4 * PIECE}-"]
    assert transferred(result) == 300_000 - 4 * PIECE


def test_piece_hashes_that_do_not_cover_the_file_refuse_the_manifest(backend, tmp_path):
    backend.piece_length = PIECE
    entry = backend.manifest(1)["files"][0]
    backend.raw_manifest_files = [dict(entry, pieces={"length": PIECE, "sha256": ["0" * 64] * 99})]
    result = run_client(backend, tmp_path)
    assert result.returncode == 2
    assert "do not cover" in result.stderr
