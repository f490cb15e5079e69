import hashlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from access import selectors, services
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
                release = services.release_update(actor=actor, release=release, changes=changes)
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
                with open(source, "rb") as f:
                    digest = storage.save(key, f, piece_size=piece_size)
            else:
                key = source
                digest = storage.hash_object(key, piece_size=piece_size)
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
