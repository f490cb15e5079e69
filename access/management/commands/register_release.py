import hashlib
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from access import marking, selectors, services
from access.models import License, ModelRelease
from access.storage import StorageError, get_storage


class Command(BaseCommand):
    help = (
        "Register a release from a local directory (uploaded to storage) or from files already under a storage "
        "prefix. Each file is streamed once to compute its SHA-256 and the SHA-256 of each piece; files already "
        "recorded with the same size are skipped, so re-running after adding a file adds only that file. Added or "
        "changed files are published as a new revision (with --notes); earlier revisions never change and stay "
        "downloadable by id."
    )

    def add_arguments(self, parser):
        parser.add_argument("repo_id", help="namespace/name, e.g. facebook/opt-125m")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--from-dir", type=Path, help="local directory to upload")
        source.add_argument("--from-prefix", help="storage prefix (S3 key prefix or LocalStorage folder) to register")
        parser.add_argument("--access", choices=["open", "gated"], default=None)
        parser.add_argument("--license", help="license slug (latest version is used); required for gated releases")
        parser.add_argument("--display-name")
        parser.add_argument("--parameters", type=int)
        parser.add_argument("--rehash", action="store_true", help="hash every file again, even if recorded")
        parser.add_argument(
            "--piece-size",
            type=int,
            default=None,
            help="bytes per hashed piece for new files (default: PIECE_SIZE, 16 MiB); a recorded file keeps its pieces",
        )
        parser.add_argument("--notes", default="", help="release notes of the revision this registration publishes")
        parser.add_argument(
            "--mark",
            type=int,
            default=0,
            metavar="N",
            help="mark the N largest .safetensors files (all of them when there are fewer): turns marking on for "
            "the release (a release with holders needs a new --license version) and writes --variants variants of "
            "each; needs --from-dir and MARKING_KEY",
        )
        parser.add_argument("--variants", type=int, default=marking.DEFAULT_VARIANTS, help="variants per marked file")
        parser.add_argument(
            "--elements", type=int, default=marking.DEFAULT_ELEMENTS, help="elements each variant flips (K)"
        )

    def handle(
        self,
        *args,
        repo_id,
        from_dir,
        from_prefix,
        access,
        license,
        display_name,
        parameters,
        rehash,
        piece_size,
        notes,
        mark=0,
        variants=marking.DEFAULT_VARIANTS,
        elements=marking.DEFAULT_ELEMENTS,
        **o,
    ):
        if "/" not in repo_id or repo_id.count("/") != 1:
            raise CommandError("repo_id must look like namespace/name")
        if piece_size is not None and piece_size < 1024:
            raise CommandError("--piece-size must be at least 1024 bytes")
        license_obj = None
        if license:
            license_obj = License.objects.filter(slug=license).order_by("-created_at").first()
            if license_obj is None:
                raise CommandError(f"no license with slug {license!r}")
        if mark:
            if not from_dir:
                raise CommandError("--mark needs --from-dir (marking reads the files locally)")
            if not 2 <= variants <= marking.MAX_VARIANTS:
                raise CommandError(f"--variants must be between 2 and {marking.MAX_VARIANTS}")
            if not 1 <= elements <= 100_000:
                raise CommandError("--elements must be between 1 and 100000")
        actor = services.command_actor("register_release")
        release = ModelRelease.objects.filter(repo_id=repo_id).first()
        try:
            if release is None:
                access = access or "open"
                if access == "gated" and license_obj is None:
                    raise CommandError("a gated release needs --license")
                candidate = ModelRelease(repo_id=repo_id, display_name=display_name or repo_id.split("/")[1])
                candidate.full_clean(exclude=["revision", "license"])
                release = services.release_create(
                    actor=actor,
                    fields={
                        "repo_id": repo_id,
                        "display_name": candidate.display_name,
                        "parameters": parameters,
                        "access": access,
                        "license": license_obj,
                    },
                )
            else:
                changes = {
                    field: value
                    for field, value in (
                        ("access", access),
                        ("license", license_obj),
                        ("display_name", display_name),
                        ("parameters", parameters),
                    )
                    if value is not None
                }
                if mark and not release.marking:
                    # The new license version (if any) goes with turning marking on: holders learn why.
                    release = services.release_marking_enable(actor=actor, release=release, license=license_obj)
                    changes.pop("license", None)
                release = services.release_update(actor=actor, release=release, changes=changes)
            if mark and not release.marking:
                release = services.release_marking_enable(actor=actor, release=release)
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        known = {f.path: f for f in release.files.all()}
        storage = get_storage()
        if from_dir:
            entries = self._local_entries(from_dir)
        else:
            prefix = from_prefix.strip("/")
            try:
                entries = [
                    (obj.key[len(prefix) + 1 :] if prefix else obj.key, obj.size, obj.key)
                    for obj in storage.list(prefix)
                ]
            except StorageError as exc:
                raise CommandError(f"cannot list {from_prefix!r}: {exc}") from exc
        to_mark = self._to_mark(entries, mark) if mark else set()
        added = skipped = 0
        for i, (path, size, source) in enumerate(entries, 1):
            if selectors.clean_file_path(path) is None:
                self.stderr.write(f"skipping unsafe path {path!r}")
                continue
            have = known.get(path)
            if have is not None and have.size == size and not rehash:
                skipped += 1
                continue
            if from_dir:
                size, sha256 = self._hash(source)
                if have is not None and (have.size, have.sha256) == (size, sha256):
                    skipped += 1
                    continue
                # A published revision's object is never overwritten: changed bytes get a key of their own.
                key = services.release_file_key(release=release, path=path)
                if path in to_mark:
                    key = marking.ORIGINALS_PREFIX + key  # the original: stored, never signed
                with open(source, "rb") as f:
                    digest = storage.save(key, f, piece_size=piece_size)
            else:
                key = source
                digest = storage.hash_object(key, piece_size=piece_size)
            marked = self._mark(release, path, source, digest, variants, elements) if path in to_mark else ()
            try:
                with transaction.atomic():
                    changed = services.release_upsert_file(
                        release=release,
                        path=path,
                        size=digest.size,
                        sha256=digest.sha256,
                        storage_key=key,
                        actor=actor,
                        piece_size=digest.piece_size,
                        pieces=digest.pieces,
                        variants=marked,
                    )
            except services.ServiceError as exc:
                raise CommandError(str(exc)) from exc
            if not changed:
                skipped += 1
                continue
            added += 1
            self.stdout.write(
                f"[{i}/{len(entries)}] {path} {digest.size} bytes sha256={digest.sha256} "
                f"({len(digest.pieces)} pieces of {digest.piece_size})"
                + (f", {len(marked)} variants" if marked else "")
            )
        try:
            revision = services.release_publish(release=release, notes=notes, actor=actor)
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        published = f"published revision {revision.number}" if revision else "no new revision"
        self.stdout.write(
            self.style.SUCCESS(
                f"{release.repo_id}: {added} added or changed, {skipped} unchanged; {published}, main is "
                f"{release.revision}"
            )
        )

    @staticmethod
    def _to_mark(entries, count: int) -> set[str]:
        """The `count` largest safetensors files (by size, then path); refuses other weight formats."""
        others = [path for path, _size, _source in entries if path.lower().endswith(marking.OTHER_WEIGHTS)]
        if others:
            raise CommandError(f"marking reads safetensors weights only; convert these first: {', '.join(others[:10])}")
        weights = [(size, path) for path, size, _source in entries if path.endswith(marking.SUFFIX)]
        if not weights:
            raise CommandError("--mark: no .safetensors file to mark")
        return {path for _size, path in sorted(weights, key=lambda w: (-w[0], w[1]))[:count]}

    def _mark(self, release, path, source, digest, variants, elements):
        """Write the variants of a file, store each under its own key; (key, size, sha256, piece size, pieces)."""
        storage = get_storage()
        with tempfile.TemporaryDirectory(prefix="mark-") as tmp:
            outputs = [Path(tmp) / f"{v}" for v in range(variants)]
            try:
                digests = marking.mark_file(source, outputs, original=digest, elements=elements)
            except marking.MarkingError as exc:
                raise CommandError(f"{path}: {exc}") from exc
            stored = []
            for v, (out, found) in enumerate(zip(outputs, digests, strict=True)):
                key = marking.variant_key(repo_id=release.repo_id, sha256=digest.sha256, variant=v, path=path)
                with open(out, "rb") as f:
                    written = storage.save(key, f, piece_size=digest.piece_size)
                if (written.sha256, written.pieces) != (found.sha256, found.pieces):
                    raise CommandError(f"{path}: variant {v} was stored with other contents")
                stored.append((key, found.size, found.sha256, found.piece_size, found.pieces))
        return stored

    @staticmethod
    def _hash(path: Path) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    @staticmethod
    def _local_entries(root: Path):
        if not root.is_dir():
            raise CommandError(f"{root} is not a directory")
        return [
            (p.relative_to(root).as_posix(), p.stat().st_size, p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()
        ]
