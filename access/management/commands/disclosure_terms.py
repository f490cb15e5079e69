from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import ModelRelease


class Command(BaseCommand):
    help = (
        "Show a release's disclosure terms for flaw reports, or publish a new version (--text-file, and "
        "--zh-file for Simplified Chinese). New reports accept the new version; nobody's access changes."
    )

    def add_arguments(self, parser):
        parser.add_argument("repo_id")
        parser.add_argument("--text-file", type=Path, help="the terms of the new version")
        parser.add_argument("--zh-file", type=Path, help="the terms in Simplified Chinese")

    def handle(self, *args, repo_id, text_file, zh_file, **options):
        release = ModelRelease.objects.filter(repo_id=repo_id).first()
        if release is None:
            raise CommandError(f"no release {repo_id}")
        if text_file is None:
            terms = services.disclosure_terms_current(release=release)
            self.stdout.write(f"{repo_id} disclosure terms v{terms.version}\n\n{terms.text}")
            return
        try:
            terms = services.disclosure_terms_publish(
                actor=services.command_actor("disclosure_terms"),
                release=release,
                text=text_file.read_text(encoding="utf-8"),
                text_zh_hans=zh_file.read_text(encoding="utf-8") if zh_file else "",
            )
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{repo_id} disclosure terms are now v{terms.version}"))
