"""Tracing leaked copies of a marked release: a synthetic release large enough to reach 10^-6, generated here with
the real marking code (register_release --mark), each person's copy assembled from their own variants."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from access import catalog_data, codewords, marking, services, tracing
from access.models import AuditEvent, License, ModelRelease
from access.storage import get_storage
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for, token_secret

pytestmark = pytest.mark.django_db

MANAGER = services.command_actor("tests")


def session(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


def tensor(seed: int, count: int = 2048) -> bytes:
    values = np.random.default_rng(seed).normal(0, 0.02, count)
    return values.astype("<f2").tobytes() if seed % 2 else values.astype("<f4").tobytes()


def write_release(root: Path, files: int, seed: int = 0) -> None:
    root.mkdir()
    for i in range(files):
        dtype = "F16" if i % 2 else "F32"
        blob = tensor(seed + i, 2048)
        tensors = [(f"layers.{i}.weight", dtype, (32, 64), blob), (f"layers.{i}.bias", "F32", (4,), b"\0" * 16)]
        (root / f"model-{i:05d}.safetensors").write_bytes(catalog_data.safetensors_bytes(tensors, {"format": "pt"}))
    (root / "config.json").write_text('{"hidden_size": 64}')


def register(tmp_path, repo_id: str, files: int, variants: int, seed: int = 0) -> ModelRelease:
    source = tmp_path / repo_id.replace("/", "-")
    write_release(source, files, seed)
    License.objects.get_or_create(slug="marked", version="1", defaults={"title": "M", "text": "Copies are marked."})
    call_command(
        "register_release",
        repo_id,
        from_dir=source,
        access="gated",
        license="marked",
        mark=files,
        variants=variants,
        elements=8,
        stdout=io.StringIO(),
    )
    return ModelRelease.objects.get(repo_id=repo_id)


def holder(release, name: str, reviewer=None):
    user = UserFactory(email=f"{name}@uni.example")
    if reviewer is not None:
        grant_for(user, release, reviewer)
    codewords.codeword_assign(release=release, user=user)
    return user


def copy_of(release, user, target: Path, only=None) -> Path:
    """The directory the person downloaded: their own variant of every marked file, the others as they are."""
    target.mkdir()
    attempt = release.codewords.get(user=user).attempt
    marks = marking.marks_for(release_id=release.pk, user_id=user.pk, attempt=attempt)
    storage = get_storage()
    for f in release.files.order_by("path"):
        if only is not None and f.path not in only:
            continue
        key = f.storage_key
        if f.mark_variants:
            key = f.variants.get(variant=marks.variant(f.path, f.mark_variants)).storage_key
        shutil.copyfile(storage.path(key), target / f.path)
    return target


def trace_dir(path: Path) -> dict:
    out = io.StringIO()
    call_command("trace_copy", str(path), json=True, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def twelve(local_storage, tmp_path, reviewer):
    release = register(tmp_path, "lab/twelve", 12, 4)
    people = {name: holder(release, name, reviewer if name == "ada" else None) for name in ("ada", "ben", "cho", "dan")}
    return release, people


def test_a_verbatim_copy_is_traced_by_hash_to_exactly_its_holder(twelve, tmp_path):
    release, people = twelve
    for name, user in people.items():
        result = trace_dir(copy_of(release, user, tmp_path / name))
        assert result["status"] == "match", result
        assert [c["user"].split("@")[0] for c in result["candidates"]] == [name]
        best = result["candidates"][0]
        assert (best["agree"], best["observed"]) == (12, 12)
        assert best["chance"] == pytest.approx(4.0**-12) and best["any_innocent"] == pytest.approx(4 * 4.0**-12)
        assert all(f["how"] == "hash" for f in result["files"] if f["path"].endswith(".safetensors"))
        assert result["release"] == "lab/twelve" and result["revision"] == release.main_revision.sha
    assert [g["id"] for g in trace_dir(tmp_path / "ada")["candidates"][0]["grants"]] == [
        release.grants.get(user=people["ada"]).public_id
    ]


def test_a_resaved_renamed_and_regrouped_copy_is_traced_by_values(twelve, tmp_path):
    release, people = twelve
    copy = copy_of(release, people["cho"], tmp_path / "cho")
    regrouped = tmp_path / "resaved"
    regrouped.mkdir()
    # Re-saved with other metadata, tensors regrouped into 3 files under other names, in another order.
    tensors = []
    for path in sorted(copy.glob("*.safetensors")):
        _length, found = marking.read_header(path)
        data = path.read_bytes()
        for t in found:
            size = marking.FLOATS[t.dtype][0]
            tensors.append((t.name, t.dtype, t.shape, data[t.start : t.start + t.count * size]))
    tensors.reverse()
    for part in range(3):
        chunk = tensors[part::3]
        blob = catalog_data.safetensors_bytes(chunk, {"format": "np", "saved_by": "someone else"})
        (regrouped / f"shard_{part}.safetensors").write_bytes(blob)
    result = trace_dir(regrouped)
    assert result["status"] == "match", result
    assert [c["user"].split("@")[0] for c in result["candidates"]] == ["cho"]
    assert result["candidates"][0]["agree"] == 12
    assert {f["how"] for f in result["files"]} == {"values"}


def test_a_subset_names_its_holder_only_when_enough_files_are_read(twelve, tmp_path):
    release, people = twelve
    paths = sorted(release.files.filter(mark_variants__gt=0).values_list("path", flat=True))
    few = trace_dir(copy_of(release, people["ben"], tmp_path / "few", only=set(paths[:6])))
    assert few["status"] == "no_confident_match" and few["candidates"] == []
    assert few["closest"]["agree"] == 6 and few["closest"]["observed"] == 6
    enough = trace_dir(copy_of(release, people["ben"], tmp_path / "enough", only=set(paths[:11])))
    assert [c["user"].split("@")[0] for c in enough["candidates"]] == ["ben"]


def test_an_unmarked_copy_and_a_foreign_copy_say_so(twelve, tmp_path):
    open_release = ReleaseFactory(repo_id="lab/open", access="open")
    add_file(open_release, "model.safetensors", b"open weights")
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "model.safetensors").write_bytes(b"open weights")
    result = trace_dir(tmp_path / "open")
    assert (result["status"], result["release"], result["candidates"]) == ("unmarked", "lab/open", [])
    foreign = tmp_path / "foreign"
    write_release(foreign, 2)
    for p in foreign.glob("*.safetensors"):  # other tensor names, other values
        p.write_bytes(catalog_data.safetensors_bytes([("other.weight", "F16", (8,), tensor(99, 8))]))
    (foreign / "config.json").write_text("{}")
    assert trace_dir(foreign)["status"] == "foreign"


def test_a_copy_mixed_from_two_people_names_both_above_every_innocent(local_storage, tmp_path):
    release = register(tmp_path, "lab/sixty-four", 64, 4)
    people = {name: holder(release, name) for name in ("ada", "ben", "cho", "dan", "eve")}
    paths = sorted(release.files.filter(mark_variants__gt=0).values_list("path", flat=True))
    mixed = copy_of(release, people["ada"], tmp_path / "mixed", only=set(paths[:32]))
    for p in copy_of(release, people["ben"], tmp_path / "ben", only=set(paths[32:])).iterdir():
        shutil.copyfile(p, mixed / p.name)
    result = trace_dir(mixed)
    assert result["status"] == "match"
    assert {c["user"].split("@")[0] for c in result["candidates"]} == {"ada", "ben"}
    assert all(c["chance"] < tracing.CONFIDENCE for c in result["candidates"])


def test_the_demo_release_names_a_whole_copy_and_nobody_from_eight_of_its_shards(local_storage, tmp_path):
    call_command("load_demo_catalog", only=[catalog_data.MARKED_REPO_ID], stdout=io.StringIO())
    release = ModelRelease.objects.get(repo_id=catalog_data.MARKED_REPO_ID)
    user = holder(release, "ada")
    whole = trace_dir(copy_of(release, user, tmp_path / "demo"))
    assert [(c["user"], c["agree"], c["observed"]) for c in whole["candidates"]] == [("ada@uni.example", 64, 64)]
    few = trace_dir(copy_of(release, user, tmp_path / "few", only=set(sorted(catalog_data.MARKED_DEMO_FILES)[:8])))
    assert few["status"] == "no_confident_match"
    assert few["closest"] == {"agree": 8, "observed": 8, "chance": 4.0**-8, "any_innocent": 4.0**-8}


def test_only_release_managers_trace_and_every_trace_is_audited_by_fingerprint(twelve, tmp_path, reviewer):
    release, people = twelve
    sums = tmp_path / "SHA256SUMS"
    copy = copy_of(release, people["dan"], tmp_path / "dan")
    sums.write_text("".join(f"{tracing.hash_file(p)}  {p.name}\n" for p in sorted(copy.iterdir())))
    strangers = (session(UserFactory()), session(people["ada"]), session(reviewer))  # a reviewer who manages nothing
    for who in (*strangers, services.Actor(user=people["ada"], credential="token")):
        with pytest.raises(services.Forbidden):
            services.copy_trace(actor=who, hashes=services.manifest_entries(sums.read_text()))
    assert not AuditEvent.objects.filter(action="marking.traced").exists()
    result = trace_dir(sums)
    assert [c["user"].split("@")[0] for c in result["candidates"]] == ["dan"]
    event = AuditEvent.objects.get(action="marking.traced")
    assert event.data["named"] == ["dan@uni.example"] and len(event.data["fingerprint"]) == 32
    # never a codeword or a variant: only counts, names and the keyed fingerprint
    assert set(event.data) == {"source", "files", "status", "release", "observed", "named", "fingerprint"}
    assert trace_dir(sums) == result
    again = AuditEvent.objects.filter(action="marking.traced").order_by("-id").first()
    assert again.data["fingerprint"] == event.data["fingerprint"]


@pytest.mark.parametrize(
    "text,code",
    [
        ("not a manifest", "trace_bad_manifest"),
        ("{bad json", "trace_bad_manifest"),
        ('{"files": [{"path": 1}]}', "trace_bad_manifest"),
        ("[" * 100_000, "trace_bad_manifest"),
        ('{"files": [{"path": "a", "sha256": "00"}]}', "trace_bad_hash"),
        ("", "trace_empty"),
    ],
)
def test_hostile_manifests_are_refused_with_stable_codes(local_storage, text, code):
    with pytest.raises(services.ServiceError) as refused:
        services.copy_trace(actor=MANAGER, hashes=services.manifest_entries(text) if text else [])
    assert refused.value.code == code


def test_hostile_hashes_are_refused_with_stable_codes(local_storage):
    for hashes, code in [
        ([("a", "z" * 64)], "trace_bad_hash"),
        ([("", "a" * 64)], "trace_bad_name"),
        ([("x" * 501, "a" * 64)], "trace_bad_name"),
        ([("a", "a" * 64)] * 10_001, "trace_too_many"),
    ]:
        with pytest.raises(services.ServiceError) as refused:
            services.copy_trace(actor=MANAGER, hashes=hashes)
        assert refused.value.code == code
    with pytest.raises(CommandError, match="no such file"):
        call_command("trace_copy", "/nonexistent/copy")


def test_a_codeword_is_hmac_sha256_of_each_path_under_the_persons_seed():
    import hashlib
    import hmac
    import random

    rng = random.Random(7)
    for size in (32, 64, 65, 100):
        seed = rng.randbytes(size)
        paths = [(f"model-{i:05d}.safetensors", rng.choice((2, 3, 4, 16))) for i in range(20)] + [("é/ü.bin", 4)]
        expected = [
            int.from_bytes(hmac.new(seed, p.encode(), hashlib.sha256).digest()[:8], "big") % v for p, v in paths
        ]
        marks = marking.Marks(seed)
        assert marks.variants([(p.encode(), v) for p, v in paths]) == expected
        assert [marks.variant(p, v) for p, v in paths] == expected


def reference_rank(vectors: dict[int, list[int]], seen: list[int], variants: list[int]):
    """The ranking rule written plainly, one holder and one file at a time (tracing.rank computes it at once)."""
    remaining, named, closest = list(range(len(seen))), [], {}
    while remaining and len(named) < len(vectors):
        done = {n[0] for n in named}
        scored = sorted(
            ((sum(1 for i in remaining if vectors[u][i] == seen[i]), u) for u in vectors if u not in done),
            key=lambda s: (-s[0], s[1]),
        )
        agree, uid = scored[0]
        tail = tracing.upper_tail([1 / variants[i] for i in remaining], agree)
        if not agree or min(1.0, tail * len(vectors)) >= tracing.CONFIDENCE:
            if not named:
                closest = {
                    "agree": agree,
                    "observed": len(seen),
                    "chance": tail,
                    "any_innocent": min(1.0, tail * len(vectors)),
                }
            break
        named.append((uid, agree, len(remaining), tail))
        remaining = [i for i in remaining if vectors[uid][i] != seen[i]]
    return named, closest


def test_the_ranking_names_whom_the_plain_rule_names_over_random_copies():
    rng = np.random.default_rng(3)
    for case in range(300):
        holders, files = int(rng.integers(1, 12)), int(rng.integers(1, 140))
        variants = [int(v) for v in rng.choice([2, 4, 4, 16], size=files)]
        codes = np.array([[rng.integers(0, v) for v in variants] for _ in range(holders)], dtype=np.int64)
        users = [int(u) for u in rng.permutation(1000)[:holders]]
        # one holder's copy, a copy mixed from two holders' files, or from any of them; a few files read wrong
        sources = [np.zeros(files, int), np.arange(files) * 2 // files % holders, rng.integers(0, holders, files)]
        sources = sources[case % 3]
        seen = [int(codes[s, i]) for i, s in enumerate(sources)]
        for i in rng.choice(files, size=int(rng.integers(0, 3)), replace=True):
            seen[i] = int(rng.integers(0, variants[i]))
        named, closest = tracing.rank(codes == np.array(seen), users, variants)
        vectors = {users[h]: [int(c) for c in codes[h]] for h in range(holders)}
        expected, expected_closest = reference_rank(vectors, seen, variants)
        assert [(users[row], agree, left, tail) for row, agree, left, tail in named] == expected, case
        assert closest == expected_closest, case


def test_the_tail_is_the_exact_binomial():
    assert tracing.upper_tail([0.25] * 12, 12) == pytest.approx(4.0**-12)
    assert tracing.upper_tail([0.5] * 4, 2) == pytest.approx(11 / 16)
    assert tracing.upper_tail([0.5, 0.25], 0) == 1.0


@pytest.fixture
def manager(db):
    """A reviewer who also manages releases (a reviewer token needs reviewer powers)."""
    user = UserFactory(email="mia@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=user)
    return services.release_manager_add(actor=services.command_actor("add_release_manager"), user=user)


def post(client, token, body):
    return client.post(
        "/api/v1/review/traces", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def test_the_api_traces_names_and_hashes_or_a_manifest_for_release_managers_only(client, twelve, tmp_path, manager):
    release, people = twelve
    copy = copy_of(release, people["ben"], tmp_path / "ben")
    files = [{"name": p.name, "sha256": tracing.hash_file(p)} for p in sorted(copy.iterdir())]
    review = token_secret(manager, review=True)
    body = post(client, review, {"files": files}).json()
    assert body["status"] == "match" and [c["user"] for c in body["candidates"]] == ["ben@uni.example"]
    sums = "".join(f"{f['sha256']}  {f['name']}\n" for f in files)
    assert post(client, review, {"manifest": sums}).json()["fingerprint"] == body["fingerprint"]
    assert AuditEvent.objects.filter(action="marking.traced", actor=manager).count() == 2
    # refusals: a token without reviewer access, a holder, nobody
    assert post(client, token_secret(manager), {"files": files}).json()["code"] == "token_scope"
    assert post(client, token_secret(people["ada"]), {"files": files}).json()["code"] == "permission_denied"
    assert client.post("/api/v1/review/traces", {"files": files}, content_type="application/json").status_code == 401
    # hostile input: clear 4xx, stable codes
    for bad, code in [
        ({"files": [{"name": "a", "sha256": "nothex"}]}, "invalid"),
        ({"manifest": "garbage"}, "trace_bad_manifest"),
        ({}, "trace_empty"),
        ([1, 2], "invalid"),
        ({"files": [{"name": "a", "sha256": "a" * 64}] * 10_001}, "trace_too_many"),
    ]:
        response = post(client, review, bad)
        assert response.status_code == 400 and response.json()["code"] == code, (bad, response.json())
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/review/traces" in schema and "review_traces_create" in schema


def test_the_reviewer_page_traces_uploaded_resaved_files_for_release_managers_only(client, twelve, tmp_path, manager):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.support.auth import login_recently

    release, people = twelve
    copy = copy_of(release, people["ada"], tmp_path / "ada")
    # re-saved with other metadata: no hash matches, read by values
    uploads = []
    for path in sorted(copy.glob("*.safetensors")):
        _length, found = marking.read_header(path)
        data = path.read_bytes()
        size = {t.name: marking.FLOATS[t.dtype][0] for t in found}
        tensors = [(t.name, t.dtype, t.shape, data[t.start : t.start + t.count * size[t.name]]) for t in found]
        blob = catalog_data.safetensors_bytes(tensors, {"note": "re-saved"})
        uploads.append(SimpleUploadedFile(f"renamed-{path.name}", blob))
    login_recently(client, people["ben"])
    assert client.get("/review/traces/").status_code in (302, 404)
    login_recently(client, manager)
    assert "trace-form" in client.get("/review/traces/").content.decode()
    page = client.post("/review/traces/", {"files": uploads, "hashes": ""})
    body = page.content.decode()
    assert page.status_code == 200 and "ada@uni.example" in body and "trace-candidates" in body, body
    assert "values" in body
    bad = client.post("/review/traces/", {"hashes": "garbage"})
    assert bad.status_code == 400 and "trace-error" in bad.content.decode()
    event = AuditEvent.objects.filter(action="marking.traced").latest("id")
    assert event.data["source"] == "page" and event.data["named"] == ["ada@uni.example"]


def test_a_lab_members_copy_names_them_with_their_seat_even_after_it_ends(twelve, tmp_path, reviewer):
    from tests.factories import AccessRequestFactory

    release, _people = twelve
    pi, max_ = UserFactory(email="pi@uni.example"), UserFactory(email="max@uni.example")
    lab = services.lab_create(actor=session(pi), name="Tracing Lab")
    _invitation, secret = services.lab_invite(actor=session(pi), lab=lab, email=max_.email)
    services.lab_invitation_accept(actor=session(max_), token=secret)
    request = AccessRequestFactory(applicant=pi, release=release, lab=lab, all_members=True)
    services.request_approve(actor=session(reviewer), access_request=request)
    grant = services.grant_issue(request_id=request.pk)
    services.lab_seat_accept(
        actor=session(max_),
        grant=grant,
        version=release.license.version,
        accept_license=True,
        noncommercial_attested=True,
    )
    codewords.codeword_assign(release=release, user=max_)
    copy = copy_of(release, max_, tmp_path / "max")
    services.grant_revoke(actor=session(reviewer), grant=grant, reason="ended")
    result = trace_dir(copy)
    assert [c["user"] for c in result["candidates"]] == ["max@uni.example"]
    assert [s["lab"] for s in result["candidates"][0]["seats"]] == ["Tracing Lab"]


def test_another_releases_copy_names_only_that_releases_holder(twelve, tmp_path):
    release, people = twelve
    other = register(tmp_path, "lab/other", 12, 4, seed=1000)
    zed = holder(other, "zed")
    result = trace_dir(copy_of(other, zed, tmp_path / "zed"))
    assert (result["release"], [c["user"] for c in result["candidates"]]) == ("lab/other", ["zed@uni.example"])
    assert result["holders"] == 1
    mine = trace_dir(copy_of(release, people["ada"], tmp_path / "ada"))
    assert (mine["release"], [c["user"] for c in mine["candidates"]]) == ("lab/twelve", ["ada@uni.example"])
