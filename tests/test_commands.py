import hashlib
import io
import subprocess
import sys

import pytest
from django.core.management import call_command

from access.catalog_data import MARKED_DEMO_FILES, OPT_175B_SHARDS
from access.models import ModelFile, ModelRelease

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.slow  # loads the whole demo catalog, 992 files of OPT-175B included
def test_load_demo_catalog_loads_the_opt_family_idempotently(local_storage):
    output = run("load_demo_catalog", "--size", "64")
    assert "Demo catalog ready" in output
    assert ModelRelease.objects.count() == 10
    assert set(ModelRelease.objects.filter(access="gated").values_list("repo_id", flat=True)) == {
        "facebook/opt-66b",
        "facebook/opt-175b",
        "demo/tiny-marked",
    }
    marked = ModelRelease.objects.get(repo_id="demo/tiny-marked")
    assert marked.marking and marked.files.filter(mark_variants=4).count() == len(MARKED_DEMO_FILES) == 64
    big = ModelRelease.objects.get(repo_id="facebook/opt-175b")
    assert sorted(big.files.values_list("path", flat=True)) == sorted(OPT_175B_SHARDS)
    assert len(OPT_175B_SHARDS) == 992
    shard = big.files.get(path="checkpoint_last-model_part-7-shard123.pt")
    with local_storage.open(shard.storage_key) as f:
        assert hashlib.sha256(f.read()).hexdigest() == shard.sha256
    # Verified faculty of Demo University are approved by a rule; opt-66b's requests stay with reviewers.
    (rule,) = big.rules.all()
    assert rule.action == "approve"
    assert rule.conditions == {"affiliation_kinds": ["faculty"], "institutions": ["0demoun01"]}
    assert not ModelRelease.objects.get(repo_id="facebook/opt-66b").rules.exists()
    revision = big.revision
    assert "(0 stored)" in run("load_demo_catalog", "--size", "64", "--only", "facebook/opt-175b")
    assert big.rules.count() == 1
    big.refresh_from_db()
    assert big.revision == revision
    assert ModelFile.objects.filter(release=big).count() == 992
    assert "no new revision" in run("load_demo_catalog", "--only", "demo/tiny-marked")


def test_load_demo_catalog_goes_through_s3(s3_storage, nanio):
    run("load_demo_catalog", "--size", "64", "--only", "facebook/opt-125m")
    release = ModelRelease.objects.get(repo_id="facebook/opt-125m")
    file = release.files.get(path="pytorch_model.bin")
    body = nanio.client().get_object(Bucket=nanio.bucket, Key=file.storage_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == file.sha256


def test_register_release_from_a_directory_adds_only_new_files(local_storage, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a" * 1000)
    (src / "sub" / "b.json").write_bytes(b"{}")
    out = run("register_release", "lab/model-x", "--from-dir", str(src))
    assert "2 added" in out
    release = ModelRelease.objects.get(repo_id="lab/model-x")
    first_revision = release.revision
    assert release.files.get(path="sub/b.json").sha256 == hashlib.sha256(b"{}").hexdigest()
    (src / "c.bin").write_bytes(b"c")
    out = run("register_release", "lab/model-x", "--from-dir", str(src))
    assert "1 added or changed, 2 unchanged" in out
    release.refresh_from_db()
    assert release.revision != first_revision
    assert release.files.count() == 3


def test_register_release_from_an_s3_prefix_hashes_in_place(s3_storage, nanio):
    client = nanio.client()
    client.put_object(Bucket=nanio.bucket, Key="incoming/m1/weights.bin", Body=b"w" * 5000)
    out = run("register_release", "lab/model-s3", "--from-prefix", "incoming/m1")
    assert "1 added" in out
    file = ModelFile.objects.get(release__repo_id="lab/model-s3")
    assert (file.path, file.size, file.storage_key) == ("weights.bin", 5000, "incoming/m1/weights.bin")
    assert file.sha256 == hashlib.sha256(b"w" * 5000).hexdigest()


def test_a_gated_release_needs_a_license(local_storage, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(Exception, match="needs --license"):
        call_command("register_release", "lab/gated", "--from-dir", str(tmp_path), "--access", "gated")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("SIGNED_URL_TTL", "soon", "SIGNED_URL_TTL must be an integer"),
        ("SIGNED_URL_TTL", "9999999", "between 1 and 604800"),
        ("STORAGE_BACKEND", "ftp", "STORAGE_BACKEND must be one of"),
        ("SECRET_KEY", "", "SECRET_KEY"),
        ("MARKING_KEY", "too-short", "MARKING_KEY must be at least 32 characters"),
    ],
)
def test_bad_settings_fail_loudly(name, value, message):
    import os

    env = dict(os.environ, **{name: value})
    result = subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; settings.DEBUG"],
        env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    import os

    secret = tmp_path / "key"
    secret.write_text("from-a-file")
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
        env={**env, "SECRET_KEY_FILE": str(secret), "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "from-a-file", result.stderr


def test_healthz_reports_each_dependency(client, local_storage):
    data = client.get("/healthz").json()
    assert data["checks"]["database"]["ok"] and data["checks"]["storage"]["ok"]
    assert data["checks"]["broker"]["ok"]


def test_healthz_is_503_when_the_broker_is_down(client, local_storage, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
