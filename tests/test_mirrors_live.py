"""Two mirrors on two real nanio servers, one byte of one piece corrupted on the first after it was verified:
`aria2c -M` and download.py both finish with every file verified, and fetch from the second mirror only what
the bad piece forces them to. A counting proxy in front of each nanio says what each client got from where
(the proxies listen on 127.0.0.1 and 127.0.0.2: aria2c treats URLs on one host name as one server)."""

import hashlib
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from access.models import ModelRelease, ReleaseMirror
from access.storage import get_storage
from tests.factories import LicenseFactory, grant_for, token_secret
from tests.support.counting_proxy import CountingProxy
from tests.support.nanio import start_nanio, stop_nanio

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "access" / "client" / "download.py"
REPO = "facebook/opt-175b"
PIECE = 64 * 1024
FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
    "checkpoint_last-model_part-0-shard0.pt": hashlib.shake_256(b"shard0").digest(5 * PIECE + 1000),
    "checkpoint_last-model_part-1-shard0.pt": hashlib.shake_256(b"shard1").digest(3 * PIECE),
    "checkpoint_last-model_part-1-shard1.pt": b"",
    # Larger than twice aria2c's smallest split size (1 MiB): the size at which it splits a file over mirrors.
    "checkpoint_last-model_part-2-shard0.pt": hashlib.shake_256(b"shard2").digest(3 * 1024 * 1024),
}
BIG_FILE = "checkpoint_last-model_part-2-shard0.pt"
BAD_FILE = "checkpoint_last-model_part-0-shard0.pt"
BAD_SIZE = len(FILES[BAD_FILE])


@pytest.fixture(autouse=True)
def _no_persistent_db_connections(monkeypatch):
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture(scope="module")
def second_nanio():
    server = start_nanio(bucket="mirror-b")
    yield server
    stop_nanio(server)


@pytest.fixture
def mirrors(nanio, second_nanio, settings, live_server, reviewer, alice):
    """Primary storage `a` on the first nanio, mirror `b` on the second, both verified for the release, and a
    token of Alice's, who holds a grant. Returns what the tests need."""
    first = CountingProxy(nanio.port, host="127.0.0.1").start()
    second = CountingProxy(second_nanio.port, host="127.0.0.2").start()
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    settings.SITE_URL = live_server.url
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGE_NAME, settings.STORAGE_LOCATION = "a", "us"
    settings.S3_BUCKET, settings.S3_ENDPOINT_URL, settings.S3_REGION = nanio.bucket, first.url, nanio.region
    settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY = nanio.access_key, nanio.secret_key
    settings.S3_ADDRESSING_STYLE, settings.S3_PREFIX = "path", ""
    settings.STORAGE_MIRRORS = {
        "b": {
            "backend": "s3",
            "bucket": second_nanio.bucket,
            "prefix": "",
            "endpoint_url": second.url,
            "region": second_nanio.region,
            "access_key": second_nanio.access_key,
            "secret_key": second_nanio.secret_key,
            "session_token": None,
            "addressing_style": "path",
            "location": "de",
            "priority": 2,
        }
    }
    get_storage.cache_clear()
    # The lab uploads the weights to both buckets itself; the portal registers what the primary holds.
    for server in (nanio, second_nanio):
        client = server.client()
        for path, data in FILES.items():
            client.put_object(Bucket=server.bucket, Key=f"{prefix}/{path}", Body=data)
    license_obj = LicenseFactory()
    call_command(
        "register_release",
        REPO,
        "--from-prefix",
        prefix,
        "--access",
        "gated",
        "--license",
        license_obj.slug,
        "--piece-size",
        str(PIECE),
        stdout=io.StringIO(),
    )
    call_command("verify_mirror", REPO, "b", stdout=io.StringIO())
    release = ModelRelease.objects.get(repo_id=REPO)
    assert ReleaseMirror.objects.get(release=release, mirror="b").status == "enabled"
    grant_for(alice, release, reviewer)
    yield {"first": first, "second": second, "prefix": prefix, "token": token_secret(alice), "nanio": nanio}
    first.stop()
    second.stop()


def corrupt(mirrors, piece: int) -> int:
    """Flip one byte of one piece of BAD_FILE on the first mirror (after it was verified); returns the piece's
    first byte."""
    data = bytearray(FILES[BAD_FILE])
    start = piece * PIECE
    data[start + 17] ^= 0x01
    nanio = mirrors["nanio"]
    nanio.client().put_object(Bucket=nanio.bucket, Key=f"{mirrors['prefix']}/{BAD_FILE}", Body=bytes(data))
    mirrors["first"].reset()
    mirrors["second"].reset()
    return start


def assert_files(folder: Path):
    for path, data in FILES.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest(), path


def documented_aria2c_options() -> list[str]:
    """The options of the `aria2c -M` command in docs/researchers.md, without its output directory: the test runs
    what researchers are told to run."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "researchers.md").read_text()
    line = next(line for line in guide.splitlines() if "aria2c -M opt-175b.meta4" in line)
    words = line.split("aria2c -M opt-175b.meta4", 1)[1].split("`", 1)[0].split()
    options = [w for i, w in enumerate(words) if w != "-d" and (i == 0 or words[i - 1] != "-d")]
    assert "--uri-selector=inorder" in options and "-s" in options, options
    return options


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("PORTAL_")}
    return {**env, **extra}


# The bad piece in the middle of the file, and the file's last (short) piece.
POSITIONS = pytest.mark.parametrize("piece", [2, 5], ids=["middle-piece", "last-piece"])


@POSITIONS
def test_download_py_fetches_only_the_bad_piece_from_the_second_mirror(mirrors, live_server, tmp_path, piece):
    start = corrupt(mirrors, piece)
    end = min(start + PIECE, BAD_SIZE) - 1
    result = subprocess.run(
        [sys.executable, str(SCRIPT), REPO, "--portal", live_server.url, "--dir", str(tmp_path / "opt"), "--jobs", "4"],
        env=clean_env(PORTAL_TOKEN=mirrors["token"], PORTAL_DOWNLOAD_BACKOFF="0.05"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All files verified" in result.stdout
    assert_files(tmp_path / "opt")

    second = mirrors["second"].gets(mirrors["prefix"])
    assert [(s.path.rsplit("/", 1)[1], s.range, s.status, s.sent) for s in second] == [
        (BAD_FILE, f"bytes={start}-{end}", 206, end - start + 1)
    ]
    first = mirrors["first"].gets(mirrors["prefix"])
    # One whole-file GET per non-empty file from the first mirror, each read to its end (the bad piece too).
    assert sorted((s.path.rsplit("/", 1)[1], s.range, s.sent) for s in first) == sorted(
        (path, None, len(data)) for path, data in FILES.items() if data
    )
    assert f"transferred_bytes[b]={end - start + 1}" in result.stdout
    assert f"transferred_bytes[a]={sum(map(len, FILES.values()))}" in result.stdout


QUIET = ("--console-log-level=warn", "--summary-interval=0")


def aria2c(mirrors, live_server, tmp_path, *options) -> subprocess.CompletedProcess:
    response = requests.get(
        f"{live_server.url}/api/v1/models/{REPO}/manifest",
        params={"format": "metalink"},
        headers={"Authorization": f"Bearer {mirrors['token']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "opt.meta4").write_text(response.text)
    return subprocess.run(
        ["aria2c", "-M", str(tmp_path / "opt.meta4"), "-d", str(tmp_path / "opt"), *options, *QUIET],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_aria2c_with_one_connection_per_file_keeps_to_the_first_mirror(mirrors, live_server, tmp_path):
    # -k 1M stands for a release's real proportions: 2.5 GB shards against aria2c's default 20 MiB split size.
    mirrors["first"].reset()
    mirrors["second"].reset()
    result = aria2c(mirrors, live_server, tmp_path / "one", *documented_aria2c_options(), "-k", "1M")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_files(tmp_path / "one" / "opt")
    assert not mirrors["second"].gets(mirrors["prefix"])
    # What -s 1 is for: with its default of 5 connections per file, aria2c gives the second mirror a share of
    # every file it splits, --uri-selector=inorder or not.
    options = documented_aria2c_options()
    del options[options.index("-s") : options.index("-s") + 2]
    result = aria2c(mirrors, live_server, tmp_path / "split", *options, "-k", "1M")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_files(tmp_path / "split" / "opt")
    assert {s.path.rsplit("/", 1)[1] for s in mirrors["second"].gets(mirrors["prefix"])} == {BIG_FILE}


@POSITIONS
def test_aria2c_metalink_verifies_pieces_and_leaves_the_bad_mirror_at_the_bad_piece(
    mirrors, live_server, tmp_path, piece
):
    start = corrupt(mirrors, piece)
    result = aria2c(mirrors, live_server, tmp_path, *documented_aria2c_options())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid checksum index=" + str(piece) in result.stdout  # the piece was caught as it arrived
    assert_files(tmp_path / "opt")

    # aria2c retries the bad piece on the same URL (--max-tries), then moves that connection to the next URL and
    # keeps it there: it asks for everything from the bad piece up to the next piece in use, which with one
    # connection per file (-s 1) is the rest of the file. Nothing before the bad piece is fetched again, and no
    # other file comes from the second mirror. When the bad piece is the last, that is exactly the piece.
    second = mirrors["second"].gets(mirrors["prefix"])
    assert [(s.path.rsplit("/", 1)[1], s.range, s.status, s.sent) for s in second] == [
        (BAD_FILE, f"bytes={start}-{BAD_SIZE - 1}", 206, BAD_SIZE - start)
    ]
    assert {s.path.rsplit("/", 1)[1] for s in mirrors["first"].gets(mirrors["prefix"])} == set(FILES)


@pytest.fixture
def lab_mirror(nanio, settings, live_server, reviewer, alice, tmp_path):
    """Primary storage `a` on nanio (behind a counting proxy), mirror `lab` a directory on the portal's own disks
    holding the same files, verified for the release; Alice holds a grant."""
    first = CountingProxy(nanio.port, host="127.0.0.1").start()
    prefix = f"lab-{uuid.uuid4().hex[:8]}"
    lab_dir = tmp_path / "lab-disks"
    settings.SITE_URL = live_server.url
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGE_NAME, settings.STORAGE_LOCATION = "a", "us"
    settings.S3_BUCKET, settings.S3_ENDPOINT_URL, settings.S3_REGION = nanio.bucket, first.url, nanio.region
    settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY = nanio.access_key, nanio.secret_key
    settings.S3_ADDRESSING_STYLE, settings.S3_PREFIX = "path", ""
    settings.STORAGE_MIRRORS = {
        "lab": {"backend": "local", "dir": str(lab_dir), "accel_redirect": "", "location": "nl", "priority": 2}
    }
    get_storage.cache_clear()
    client = nanio.client()
    for path, data in FILES.items():
        client.put_object(Bucket=nanio.bucket, Key=f"{prefix}/{path}", Body=data)
        (lab_dir / prefix).mkdir(parents=True, exist_ok=True)
        (lab_dir / prefix / path).write_bytes(data)
    call_command(
        "register_release",
        REPO,
        "--from-prefix",
        prefix,
        "--access",
        "gated",
        "--license",
        LicenseFactory().slug,
        "--piece-size",
        str(PIECE),
        stdout=io.StringIO(),
    )
    out = io.StringIO()
    call_command("verify_mirror", REPO, "lab", stdout=out)
    assert "lab verified" in out.getvalue()
    release = ModelRelease.objects.get(repo_id=REPO)
    grant_for(alice, release, reviewer)
    first.reset()  # registering read the primary's copy
    yield {"first": first, "prefix": prefix, "token": token_secret(alice), "nanio": nanio, "dir": lab_dir}
    first.stop()


def test_a_local_mirror_serves_mirror_requests_and_download_py_falls_back_to_it(lab_mirror, live_server, tmp_path):
    auth = {"Authorization": f"Bearer {lab_mirror['token']}"}
    chosen = requests.get(
        f"{live_server.url}/api/v1/models/{REPO}/files/{BAD_FILE}", params={"mirror": "lab"}, headers=auth, timeout=30
    )
    assert chosen.status_code == 200 and chosen.content == FILES[BAD_FILE]
    assert chosen.history[0].headers["X-Mirror"] == "lab" and "/storage/lab/" in chosen.url
    assert not lab_mirror["first"].gets(lab_mirror["prefix"])  # nothing came from the primary

    # One piece corrupted on the primary, one file gone from it: download.py takes the bad piece, and the
    # missing file, from the lab's disks, and everything else from the primary.
    data = bytearray(FILES[BAD_FILE])
    data[2 * PIECE + 17] ^= 0x01
    nanio, prefix = lab_mirror["nanio"], lab_mirror["prefix"]
    nanio.client().put_object(Bucket=nanio.bucket, Key=f"{prefix}/{BAD_FILE}", Body=bytes(data))
    gone = "checkpoint_last-model_part-1-shard0.pt"
    nanio.client().delete_object(Bucket=nanio.bucket, Key=f"{prefix}/{gone}")
    lab_mirror["first"].reset()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), REPO, "--portal", live_server.url, "--dir", str(tmp_path / "opt"), "--jobs", "4"],
        env=clean_env(PORTAL_TOKEN=lab_mirror["token"], PORTAL_DOWNLOAD_BACKOFF="0.05"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All files verified" in result.stdout
    assert_files(tmp_path / "opt")
    assert f"transferred_bytes[lab]={PIECE + len(FILES[gone])}" in result.stdout
    served = {(s.path.rsplit("/", 1)[1], s.status) for s in lab_mirror["first"].gets(prefix)}
    assert (gone, 404) in served and (BAD_FILE, 200) in served
