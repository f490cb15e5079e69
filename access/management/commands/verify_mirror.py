from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import ModelRelease, ReleaseMirror


class Command(BaseCommand):
    help = (
        "Verify a mirror's copy of a release (every file present, with the recorded size, SHA-256 and piece "
        "hashes) and enable the mirror for the release when nothing differs; otherwise it stays disabled and the "
        "files that differ are listed. Streams the whole release from the mirror once; a marked file's variants are "
        "checked, never its original. --disable stops a mirror serving the release."
    )

    def add_arguments(self, parser):
        parser.add_argument("repo_id", help="namespace/name, e.g. facebook/opt-175b")
        parser.add_argument("mirror", help="a name from STORAGE_MIRRORS")
        parser.add_argument("--disable", action="store_true", help="disable the mirror for the release instead")
        parser.add_argument("--reason", default="", help="why it is disabled (recorded in the audit log)")

    def handle(self, *args, repo_id, mirror, disable, reason, **options):
        release = ModelRelease.objects.filter(repo_id=repo_id).first()
        if release is None:
            raise CommandError(f"no release {repo_id!r}")
        actor = services.command_actor("verify_mirror")
        try:
            if disable:
                services.mirror_disable(actor=actor, release=release, mirror=mirror, reason=reason)
                self.stdout.write(f"{mirror} no longer serves {repo_id}.")
                return
            row = services.mirror_verify(actor=actor, release=release, mirror=mirror, progress=self._progress)
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        if row.status == ReleaseMirror.Status.ENABLED:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{mirror} verified for {repo_id} @ {row.revision}: {row.files_checked} files, "
                    f"{row.bytes_checked} bytes identical; enabled."
                )
            )
            return
        for difference in row.differences:
            self.stderr.write(f"  differs: {self._describe(difference)}")
        raise CommandError(
            f"{mirror} differs from the record in {len(row.differences)} of {row.files_checked} files; "
            f"it stays disabled for {repo_id}."
        )

    def _progress(self, file, difference):
        self.stdout.write(f"{file.path}: {'ok' if difference is None else difference['problem']}")

    @staticmethod
    def _describe(d: dict) -> str:
        if d["problem"] == "missing":
            return f"{d['path']}: missing on the mirror"
        if d["problem"] == "pieces":
            return f"{d['path']}: pieces {', '.join(map(str, d['found']))} differ"
        if d["problem"] == "revision":
            return f"the release changed while verifying ({d['expected']} -> {d['found']}); verify again"
        return f"{d['path']}: {d['problem']} is {d['found']}, expected {d['expected']}"
