"""Marked copies: the demo release's variants read back with the safetensors header and numpy, each person's
variants on every channel, and the attacks (another variant, the original, another person's URL)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from safetensors import safe_open

from access import catalog_data, codewords, marking, services
from access.downloads import relay_url
from access.models import AuditEvent, FileVariant, License, MarkingCodeword, ModelRelease
from access.storage import LocalStorage, get_storage
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

REPO = catalog_data.MARKED_REPO_ID
# The demo's first 6 shards (F16, BF16 and F32, two of each): all a test here needs of the release, registered in a
# quarter of the time of its 64 (tests/test_marking_live.py and tests/test_tracing.py load the whole release).
SHARDS = sorted(catalog_data.MARKED_DEMO_FILES)[:6]
SAMPLE = SHARDS[:3]  # an F16, a BF16 and an F32 shard: the per-file requests of every channel
K = marking.DEFAULT_ELEMENTS
MANAGER = services.command_actor("tests")


def session(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


@pytest.fixture
def release(local_storage, monkeypatch):
    monkeypatch.setattr(catalog_data, "MARKED_DEMO_FILES", {s: catalog_data.MARKED_DEMO_FILES[s] for s in SHARDS})
    call_command("load_demo_catalog", only=[REPO], stdout=io.StringIO())
    return ModelRelease.objects.get(repo_id=REPO)


def stored_path(key: str) -> Path:
    return get_storage().path(key)


def raw_views(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Each floating tensor as (dtype, raw unsigned integers), at the offsets the safetensors header gives."""
    with safe_open(str(path), framework="numpy") as f:
        names = list(f.keys())
    data = path.read_bytes()
    (length,) = np.frombuffer(data[:8], "<u8")
    header = json.loads(data[8 : 8 + int(length)])
    out = {}
    for name in names:
        info = header[name]
        begin, end = (8 + int(length) + o for o in info["data_offsets"])
        view = marking.FLOATS[info["dtype"]][1]
        out[name] = (info["dtype"], np.frombuffer(data[begin:end], view))
    return out


def as_float(dtype: str, raw: np.ndarray) -> np.ndarray:
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return raw.view({"F16": "<f2", "F32": "<f4"}[dtype]).astype(np.float64)


def tensor_info(path: Path) -> dict[str, tuple[list[int], str]]:
    """Each tensor's shape and dtype, as the safetensors library reads the header."""
    with safe_open(str(path), framework="numpy") as f:
        return {name: (f.get_slice(name).get_shape(), f.get_slice(name).get_dtype()) for name in list(f.keys())}


def test_each_variant_differs_from_the_original_in_exactly_k_elements_by_one_ulp(release):
    absolute, relative = [], []
    for file in release.files.filter(mark_variants__gt=0).order_by("path"):
        original = raw_views(stored_path(file.storage_key))
        header = tensor_info(stored_path(file.storage_key))
        seen = []
        assert file.mark_variants == 4
        for variant in file.variants.order_by("variant"):
            path = stored_path(variant.storage_key)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == variant.sha256
            assert path.stat().st_size == variant.size == file.size
            assert tensor_info(path) == header, "headers, shapes and dtypes stay the same"
            marked = raw_views(path)
            differing = set()
            for name, (dtype, before) in original.items():
                after = marked[name][1]
                where = np.nonzero(before != after)[0]
                assert np.all((before[where] ^ after[where]) == 1), "only the lowest mantissa bit changes"
                old, new = as_float(dtype, before[where]), as_float(dtype, after[where])
                assert np.all(np.isfinite(new)) and np.all(new != 0)
                assert np.all(np.sign(old) == np.sign(new))
                # one unit in the last place: the spacing of the binade both values are in (the larger of the two is
                # never a power of two, whose spacing numpy may take from the binade below)
                larger = np.maximum(np.abs(old), np.abs(new)).astype(np.float16)
                ulp = {"F16": np.spacing(larger).astype(np.float64)}.get(dtype)
                if ulp is not None:
                    assert np.allclose(np.abs(new - old), np.abs(ulp))
                absolute.append(np.max(np.abs(new - old), initial=0))
                relative.append(np.max(np.abs(new - old) / np.abs(old), initial=0))
                differing |= {(name, int(i)) for i in where}
            assert len(differing) == K
            assert not any(differing & other for other in seen), "different elements per variant"
            seen.append(differing)
    # docs/marking.md reports these: at most one ulp, so at most 2^-7 of the value for BF16 (7 mantissa bits)
    print(f"largest change: absolute {max(absolute):.3g}, relative {max(relative):.3g}")
    assert max(relative) <= 2**-7 and max(absolute) < 1e-3


def test_positions_and_codewords_come_from_the_key(release, tmp_path, settings):
    file = release.files.filter(mark_variants__gt=0).order_by("path").first()
    original = stored_path(file.storage_key)
    same = marking.positions(original, sha256=file.sha256, variants=2, elements=8)
    assert same == marking.positions(original, sha256=file.sha256, variants=2, elements=8)
    other = marking.positions(original, sha256=file.sha256, variants=2, elements=8, key=b"another key" * 4)
    assert same != other
    settings.MARKING_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="MARKING_KEY"):
        marking.marks_for(release_id=1, user_id=1, attempt=0)


def test_marking_refuses_other_formats_and_asks_holders_for_a_new_license(local_storage, reviewer):
    pickle = ReleaseFactory(repo_id="lab/pickled", access="gated")
    add_file(pickle, "pytorch_model.bin", b"weights")
    with pytest.raises(services.ServiceError, match="safetensors") as refused:
        services.release_marking_enable(actor=MANAGER, release=pickle)
    assert refused.value.code == "marking_not_safetensors"
    held = ReleaseFactory(repo_id="lab/held", access="gated")
    add_file(held, "model.safetensors", catalog_data.safetensors_bytes([("w", "F32", (4,), b"\0\0\x80?" * 4)]))
    grant_for(UserFactory(), held, reviewer)
    with pytest.raises(services.ServiceError, match="new license version") as refused:
        services.release_marking_enable(actor=MANAGER, release=held)
    assert refused.value.code == "marking_needs_license"
    newer = License.objects.create(slug=held.license.slug, version="2.0", title="T", text="Copies are marked.")
    assert services.release_marking_enable(actor=MANAGER, release=held, license=newer).marking
    with pytest.raises(services.Forbidden):
        services.release_marking_enable(actor=session(UserFactory()), release=held)


def test_register_release_refuses_to_mark_other_weight_formats(local_storage, tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"x" * 100)
    License.objects.create(slug="l", version="1", title="L", text="L")
    with pytest.raises(Exception, match="safetensors"):
        call_command("register_release", "lab/bin", from_dir=tmp_path, access="gated", license="l", mark=1)


@pytest.fixture
def people(release, reviewer):
    users = {name: UserFactory(email=f"{name}@uni.example") for name in ("ada", "ben", "cho", "pi", "max")}
    for name in ("ada", "ben", "cho"):
        grant_for(users[name], release, reviewer)
    lab = services.lab_create(actor=session(users["pi"]), name="Marked Lab")
    _invitation, secret = services.lab_invite(actor=session(users["pi"]), lab=lab, email=users["max"].email)
    services.lab_invitation_accept(actor=session(users["max"]), token=secret)
    request = AccessRequestFactory(applicant=users["pi"], release=release, lab=lab, all_members=True)
    services.request_approve(actor=session(reviewer), access_request=request)
    grant = services.grant_issue(request_id=request.pk)
    services.lab_seat_accept(
        actor=session(users["max"]), grant=grant, version="1.0", accept_license=True, noncommercial_attested=True
    )
    tokens = {name: token_secret(user) for name, user in users.items()}
    return {"users": users, "tokens": tokens, "lab_grant": grant}


def get(client, url, token, **extra):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def manifest(client, token, fmt="json"):
    response = get(client, f"/api/v1/models/{REPO}/manifest?format={fmt}", token)
    assert response.status_code == 200, response.content
    return response


def hashes(client, token) -> dict[str, str]:
    return {e["path"]: e["sha256"] for e in manifest(client, token).json()["files"]}


def fetch(client, url: str) -> bytes:
    response = client.get(url.split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    assert response.status_code == 200, response.content[:200]
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_every_channel_serves_each_person_their_own_variant(client, people, release):
    tokens = people["tokens"]
    mine = {name: hashes(client, tokens[name]) for name in ("ada", "ben", "cho", "max")}
    assert len({tuple(sorted(m.items())) for m in mine.values()}) == 4, "four people, four codewords"
    assert mine["ada"]["config.json"] == mine["ben"]["config.json"], "unmarked files are the same for all"
    ada = tokens["ada"]
    for shard in SAMPLE:
        response = get(client, f"/api/v1/models/{REPO}/files/{shard}", ada)
        assert response.status_code == 302 and response["X-Checksum-Sha256"] == mine["ada"][shard]
        assert hashlib.sha256(fetch(client, response["Location"])).hexdigest() == mine["ada"][shard]
        head = client.head(f"/{REPO}/resolve/main/{shard}", HTTP_AUTHORIZATION=f"Bearer {ada}")
        assert head["X-Linked-Etag"] == f'"{mine["ada"][shard]}"'
        stored = client.head(head["Location"].split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
        assert stored["X-Linked-Etag"] == f'"{mine["ada"][shard]}"'
    tree = {e["path"]: e for e in get(client, f"/api/models/{REPO}/tree/main", ada).json()}
    assert all(tree[shard]["lfs"]["oid"] == mine["ada"][shard] for shard in SHARDS)
    info = {s["rfilename"]: s for s in get(client, f"/api/models/{REPO}", ada).json()["siblings"]}
    assert all(info[shard]["lfs"]["sha256"] == mine["ada"][shard] for shard in SHARDS)
    metalink = manifest(client, ada, "metalink").content.decode()
    for shard in SAMPLE:
        variant = FileVariant.objects.get(
            file__revision=release.main_revision, file__path=shard, sha256=mine["ada"][shard]
        )
        assert mine["ada"][shard] in metalink and variant.piece_hashes[0] in metalink
    sums = manifest(client, ada, "sha256sum").content.decode()
    assert all(f"{mine['ada'][shard]}  {shard}" in sums for shard in SHARDS)
    wget = manifest(client, ada, "wget").content.decode()
    listed = next(line for line in wget.splitlines() if line.endswith(SHARDS[0]) and line.startswith("http"))
    assert hashlib.sha256(fetch(client, listed)).hexdigest() == mine["ada"][SHARDS[0]]
    file = release.files.get(path=SHARDS[0])
    relay = relay_url(file.pk, file.path, user_id=people["users"]["ada"].pk, base_url="http://testserver")
    followed = client.get(relay.split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    assert hashlib.sha256(fetch(client, followed["Location"])).hexdigest() == mine["ada"][SHARDS[0]]
    # The same person on a second request, and as a lab member through the lab's grant page batch
    assert hashes(client, ada) == mine["ada"]


def test_grant_page_batches_hand_out_the_persons_own_variants(client, people):
    for name in ("ada", "ben"):
        user = people["users"][name]
        grant = user.grants.get()
        client.force_login(user)
        response = client.get(f"/grants/{grant.public_id}/batch.json")
        assert response.status_code == 200, response.content[:300]
        entries = {e["path"]: e for e in json.loads(response.content)["files"]}
        assert {p: e["sha256"] for p, e in entries.items()} == hashes(client, people["tokens"][name])
        shard = SHARDS[1]
        assert hashlib.sha256(fetch(client, entries[shard]["url"])).hexdigest() == entries[shard]["sha256"]


def test_codewords_are_distinct_recorded_by_fingerprint_only_and_capacity_is_v_to_the_n(client, people, release):
    for token in people["tokens"].values():
        manifest(client, token)
    rows = list(MarkingCodeword.objects.filter(release=release))
    assert len(rows) == 5 and len({r.fingerprint for r in rows}) == 5  # three researchers, the PI, a member
    assert codewords.usage(release) == (5, 4 ** len(SHARDS))
    events = AuditEvent.objects.filter(action="marking.codeword_assigned")
    seeds = [codewords.person_marks(release=release, user=r.user, attempt=r.attempt).seed.hex() for r in rows]
    text = json.dumps(list(AuditEvent.objects.values_list("data", flat=True)))
    assert events.count() == 5 and not any(seed in text for seed in seeds)
    assert not AuditEvent.objects.filter(action="marking.capacity_warning").exists()


def test_attacks_another_variant_the_original_another_persons_url(client, people, release, settings):
    ada, ben = people["tokens"]["ada"], people["tokens"]["ben"]
    shard = SHARDS[0]
    mine = hashes(client, ada)[shard]
    file = release.files.get(path=shard)
    others = file.variants.exclude(sha256=mine)
    # by path: variants and originals are no files of the release
    for other in [*others, file]:
        key = other.storage_key
        assert get(client, f"/api/v1/models/{REPO}/files/{key}", ada).status_code == 404
        assert client.head(f"/{REPO}/resolve/main/{key}", HTTP_AUTHORIZATION=f"Bearer {ada}").status_code == 404
    # by object key: a URL for another variant or the original needs a signature the portal never gave
    url = get(client, f"/api/v1/models/{REPO}/files/{shard}", ada)["Location"]
    expires, signature, key = re.search(r"/storage/(\d+)/([0-9a-f]{64})/(.+)$", url).groups()
    for other in [*others, file]:
        forged = f"/storage/{expires}/{signature}/{other.storage_key}"
        assert client.get(forged).status_code == 403
    # even a correctly signed URL for an original is refused, and the portal never signs one
    signed = LocalStorage.signature(file.storage_key, int(expires))
    assert client.get(f"/storage/{expires}/{signed}/{file.storage_key}").status_code == 403
    with pytest.raises(ValueError):
        get_storage().signed_url(file.storage_key, filename=shard)
    # ?mirror= names a location, never a variant
    response = get(client, f"/api/v1/models/{REPO}/files/{shard}?mirror={settings.STORAGE_NAME}", ada)
    assert response["X-Checksum-Sha256"] == mine
    # another person's signed URL works until its TTL, like any URL, then stops
    bens = get(client, f"/api/v1/models/{REPO}/files/{shard}", ben)["Location"]
    assert client.get("/" + bens.split("://", 1)[1].split("/", 1)[1]).status_code == 200
    expires = int(re.search(r"/storage/(\d+)/", bens).group(1))
    later = time.time() + settings.SIGNED_URL_TTL + 5
    storage = get_storage()
    key = re.search(r"/storage/\d+/[0-9a-f]{64}/(.+)$", bens).group(1)
    assert not storage.verify(key, expires, re.search(r"/([0-9a-f]{64})/", bens).group(1), now=later)


def test_a_mirror_holds_the_variants_and_verify_mirror_checks_each(client, people, release, settings, tmp_path):
    mirror_dir = tmp_path / "mirror"
    settings.STORAGE_MIRRORS = {
        "lab": {"backend": "local", "dir": str(mirror_dir), "accel_redirect": "", "location": "nl", "priority": 2}
    }
    get_storage.cache_clear()
    primary = get_storage()
    for file in release.files.all():
        for key in [v.storage_key for v in file.variants.all()] or [file.storage_key]:
            target = mirror_dir / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(primary.path(key).read_bytes())
    row = services.mirror_verify(actor=MANAGER, release=release, mirror="lab")
    assert row.status == "enabled" and row.differences == []
    assert not any("_originals" in p.as_posix() for p in mirror_dir.rglob("*")), "originals stay home"
    ada = people["tokens"]["ada"]
    mine = hashes(client, ada)
    response = get(client, f"/api/v1/models/{REPO}/files/{SHARDS[0]}?mirror=lab", ada)
    assert response["X-Mirror"] == "lab" and response["X-Checksum-Sha256"] == mine[SHARDS[0]]
    assert hashlib.sha256(fetch(client, response["Location"])).hexdigest() == mine[SHARDS[0]]
    # one flipped bit in one variant on the mirror: verification names the variant
    file = release.files.get(path=SHARDS[1])
    broken = mirror_dir / file.variants.get(variant=3).storage_key
    data = bytearray(broken.read_bytes())
    data[-1] ^= 1
    broken.write_bytes(bytes(data))
    row = services.mirror_verify(actor=MANAGER, release=release, mirror="lab")
    assert row.status == "failed" and row.differences[0]["path"] == f"{SHARDS[1]}#3"


def test_the_release_detail_shows_each_holder_their_own_hashes_and_nobody_the_originals(client, people, release):
    ada = people["tokens"]["ada"]
    detail = {f["path"]: f["sha256"] for f in get(client, f"/api/v1/models/{REPO}", ada).json()["files"]}
    assert detail == hashes(client, ada)
    stranger = UserFactory()
    listed = get(client, f"/api/v1/models/{REPO}", token_secret(stranger)).json()["files"]
    shown = {f["path"]: f["sha256"] for f in listed}
    assert all(shown[shard] is None for shard in SHARDS) and shown["config.json"] == detail["config.json"]
    assert not MarkingCodeword.objects.filter(user=stranger).exists(), "no codeword without access"


@pytest.fixture
def small(local_storage, tmp_path):
    """A release of two marked files in 4 variants: 4^2 = 16 codewords, few enough to use up."""
    from tests.test_tracing import register

    return register(tmp_path, "lab/two-marked", 2, 4)


def test_the_release_page_shows_the_capacity_and_warns_release_managers_at_ten_percent(client, small, release):
    people = [UserFactory(), UserFactory()]
    for user in people:
        codewords.codeword_assign(release=small, user=user)
    assert AuditEvent.objects.filter(action="marking.capacity_warning").count() == 1  # 2 of 16 passed 10%
    client.force_login(people[0])
    page = client.get(f"/models/{small.repo_id}").content.decode()
    assert "4^2 = 16" in page and 'id="marking-usage"' not in page
    assert f"4^{len(SHARDS)} = {4 ** len(SHARDS):,}" in client.get(f"/models/{REPO}").content.decode()
    manager = UserFactory()
    services.release_manager_add(actor=services.command_actor("tests"), user=manager)
    client.force_login(manager)
    page = client.get(f"/models/{small.repo_id}").content.decode()
    assert "2 of 16 codewords are in use" in page and "More than 10%" in page
    for row in MarkingCodeword.objects.all():
        assert row.fingerprint not in page
        seed = codewords.person_marks(release=row.release, user=row.user, attempt=row.attempt).seed.hex()
        assert seed not in page


def test_a_release_manager_turns_marking_on_from_the_release_page(client, local_storage, reviewer):
    held = ReleaseFactory(repo_id="lab/held", access="gated")
    add_file(held, "model.safetensors", catalog_data.safetensors_bytes([("w", "F32", (4,), b"\0\0\x80?" * 4)]))
    grant_for(UserFactory(), held, reviewer)
    manager = UserFactory()
    services.release_manager_add(actor=services.command_actor("tests"), user=manager)
    login_recently(client, manager)
    page = client.get(f"/manage/{held.repo_id}/").content.decode()
    assert "needs a new license version" in page
    response = client.post(f"/manage/{held.repo_id}/marking", {"license": held.license_id}, follow=True)
    assert "new license version" in response.content.decode() and not ModelRelease.objects.get(pk=held.pk).marking
    newer = License.objects.create(slug=held.license.slug, version="2.0", title="T", text="Copies are marked.")
    client.post(f"/manage/{held.repo_id}/marking", {"license": newer.pk})
    held.refresh_from_db()
    assert held.marking and held.license == newer
    assert AuditEvent.objects.filter(action="release.marking_enabled").count() == 1


def test_a_published_files_variants_never_change(release):
    from django.db import DatabaseError, transaction

    variant = FileVariant.objects.filter(file__revision=release.main_revision).first()
    for write in (
        lambda: FileVariant.objects.filter(pk=variant.pk).update(sha256="0" * 64),
        lambda: FileVariant.objects.filter(pk=variant.pk).delete(),
        lambda: FileVariant.objects.create(file=variant.file, variant=9, size=1, sha256="0" * 64, storage_key="x"),
    ):
        with pytest.raises(DatabaseError, match="variant"), transaction.atomic():
            write()


def test_a_new_revision_keeps_the_marked_files_variants_and_each_persons_copy(client, people, release):
    before = hashes(client, people["tokens"]["ada"])
    first = release.main_revision
    add_file(release, "generation_config.json", b"{}")
    release.refresh_from_db()
    assert release.main_revision != first
    kept = FileVariant.objects.filter(file__revision=release.main_revision)
    assert kept.count() == 4 * len(SHARDS) and set(kept.values_list("sha256", flat=True)) == set(
        FileVariant.objects.filter(file__revision=first).values_list("sha256", flat=True)
    )
    after = hashes(client, people["tokens"]["ada"])
    assert {p: after[p] for p in SHARDS} == {p: before[p] for p in SHARDS}
    old = get(client, f"/api/v1/models/{REPO}/manifest?revision={first.sha}", people["tokens"]["ada"]).json()
    assert {e["path"]: e["sha256"] for e in old["files"]} == before


def test_when_every_codeword_is_held_the_next_person_is_told_not_served(client, small, reviewer):
    for _ in range(16):
        codewords.codeword_assign(release=small, user=UserFactory())
    late = UserFactory()
    with pytest.raises(codewords.CapacityExhausted):
        codewords.codeword_assign(release=small, user=late)
    request = AccessRequestFactory(applicant=late, release=small)
    services.request_approve(actor=session(reviewer), access_request=request)
    services.grant_issue(request_id=request.pk)  # issued: a batch's marked files are signed when handed out
    response = get(client, f"/api/v1/models/{small.repo_id}/manifest", token_secret(late))
    assert response.status_code == 503 and response.json()["code"] == "marking_capacity"
    assert len(set(MarkingCodeword.objects.filter(release=small).values_list("fingerprint", flat=True))) == 16


def test_a_marked_download_pays_no_query_once_the_persons_facts_are_cached(people):
    """The variant is computed from the codeword: after the first download, a person's next ones read nothing but
    what any download reads (the token's bookkeeping and the event's insert)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    api = Client()
    ada = people["tokens"]["ada"]
    manifest(api, ada)  # her first download records her codeword (a write: nothing is cached in that request)
    for shard in SAMPLE:  # the first of each reads the file, the person's facts and the variant once
        assert get(api, f"/api/v1/models/{REPO}/files/{shard}", ada).status_code == 302
    for shard in SAMPLE:
        with CaptureQueriesContext(connection) as later:
            assert get(api, f"/api/v1/models/{REPO}/files/{shard}", ada).status_code == 302
        reads = [q["sql"] for q in later.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
        assert reads == [], reads
