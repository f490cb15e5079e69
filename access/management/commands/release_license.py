from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import License, ModelRelease


class Command(BaseCommand):
    help = (
        "Move a release to a version of its license, publishing the version first when it is new (--text-file). "
        "Holders of active grants on an older version are emailed once and must accept it (or, with --mode review, "
        "accept it and be approved again) before any channel lets them download."
    )

    def add_arguments(self, parser):
        parser.add_argument("repo_id")
        parser.add_argument("--license-version", dest="version", required=True, help="the version, e.g. 1.1")
        parser.add_argument("--slug", help="license slug (default: the release's current license)")
        parser.add_argument("--text-file", type=Path, help="full text of a new version")
        parser.add_argument("--title", help="title of a new version (default: the current version's)")
        parser.add_argument("--summary", default="", help="summary of changes of a new version")
        parser.add_argument("--mode", choices=["reconsent", "review"], help="what holders of older versions do")

    def handle(self, *args, repo_id, version, slug, text_file, title, summary, mode, **options):
        release = ModelRelease.objects.select_related("license").filter(repo_id=repo_id).first()
        if release is None:
            raise CommandError(f"no release {repo_id}")
        slug = slug or (release.license.slug if release.license else None)
        if not slug:
            raise CommandError("the release has no license yet: pass --slug")
        actor = services.command_actor("release_license")
        license_obj = License.objects.filter(slug=slug, version=version).first()
        try:
            if license_obj is None:
                if text_file is None:
                    raise CommandError(f"{slug} has no version {version}: pass --text-file to publish it")
                license_obj = services.license_publish(
                    actor=actor,
                    slug=slug,
                    version=version,
                    title=title or (release.license.title if release.license else slug),
                    text=text_file.read_text(encoding="utf-8"),
                    summary_of_changes=summary,
                )
                self.stdout.write(f"published {slug} v{version}")
            services.release_set_license(actor=actor, release=release, license=license_obj, mode=mode)
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        release.refresh_from_db()
        self.stdout.write(
            self.style.SUCCESS(
                f"{repo_id} is on {slug} v{release.license.version}; holders of older versions "
                f"{'are reviewed again' if release.license_update_mode == 'review' else 're-consent'} after accepting"
            )
        )
