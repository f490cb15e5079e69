import os
import tempfile
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from access import catalog_data, services
from access.models import AccessQuestion, Institution, License, ModelRelease, ReleaseDocument
from access.storage import get_storage

# The demo's files are 16 KiB or so: small pieces give each several, as a real shard has many.
DEMO_PIECE_SIZE = 4096


class Command(BaseCommand):
    help = "Load the OPT demo catalog (idempotent): releases, license and synthetic files in the configured storage."

    def add_arguments(self, parser):
        parser.add_argument("--size", type=int, default=16384, help="bytes per weight file (default 16384)")
        parser.add_argument("--only", action="append", help="load only these repo ids (repeatable)")
        parser.add_argument(
            "--piece-size",
            type=int,
            default=DEMO_PIECE_SIZE,
            help=f"bytes per hashed piece (default {DEMO_PIECE_SIZE}: small, so the small demo files have several)",
        )

    def handle(self, *args, size, only, piece_size, **options):
        if piece_size < 1024:
            raise CommandError("--piece-size must be at least 1024 bytes")
        storage = get_storage()
        license_obj, _ = License.objects.get_or_create(
            slug="opt-175b-noncommercial",
            version="1.0",
            defaults={"title": "OPT-175B Non-Commercial Research License", "text": catalog_data.OPT_LICENSE_TEXT},
        )
        actor = services.command_actor("load_demo_catalog")
        for row in catalog_data.releases():
            if only and row["repo_id"] not in only:
                continue
            # The open OPT models are under the same license: shown on their page, it gates nothing.
            fields = {**row, "license": license_obj}
            release = ModelRelease.objects.filter(repo_id=row["repo_id"]).first()
            created = release is None
            if created:
                release = services.release_create(actor=actor, fields=fields)
            else:
                changes = {k: v for k, v in fields.items() if k != "repo_id"}
                release = services.release_update(actor=actor, release=release, changes=changes)
            existing = {f.path: f for f in release.files}
            paths = catalog_data.release_files(release.name)
            added = 0
            for i, path in enumerate(paths, 1):
                expected = catalog_data.synthetic_size(path, size)
                have = existing.get(path)
                if have is not None and have.size == expected and storage.exists(have.storage_key):
                    continue
                # Contents are generated from the base key, whichever key a changed file is stored under.
                key = services.release_file_key(release=release, path=path)
                digest = storage.save(
                    key, catalog_data.SyntheticFile(f"{release.repo_id}/{path}", expected), piece_size=piece_size
                )
                with transaction.atomic():
                    services.release_upsert_file(
                        release=release,
                        path=path,
                        size=digest.size,
                        sha256=digest.sha256,
                        storage_key=key,
                        actor=actor,
                        piece_size=digest.piece_size,
                        pieces=digest.pieces,
                    )
                added += 1
                if added % 100 == 0:
                    self.stdout.write(f"  {release.repo_id}: {i}/{len(paths)} files")
            services.release_publish(
                release=release, notes="Demo files" if created else "Demo files regenerated", actor=actor
            )
            self._questions(release, actor)
            self._documents(release, actor)
            state = "created" if created else "up to date" if not added else "updated"
            self.stdout.write(f"{release.repo_id}: {len(paths)} files ({added} stored) — {state}")
        if not only or catalog_data.MARKED_REPO_ID in only:
            self._marked(actor)
        self._institution(actor)
        self._rules(actor, only)
        self.stdout.write(self.style.SUCCESS("Demo catalog ready."))

    def _rules(self, actor, only):
        """The demo releases' decision rules, set once (a manager's later edits are kept)."""
        for repo_id, rules in catalog_data.DEMO_RULES.items():
            release = ModelRelease.objects.filter(repo_id=repo_id).first()
            if release is None or (only and repo_id not in only) or release.rules.exists():
                continue
            services.release_rules_set(actor=actor, release=release, rules=rules)
            self.stdout.write(f"{repo_id}: {len(rules)} decision rule(s)")

    def _marked(self, actor):
        """The marked demo release: 64 real safetensors shards (F16, BF16 and F32 tensors), gated, every shard
        marked in 4 variants (4^64 codewords, enough to trace a copy); registered as production registers a
        release."""
        License.objects.get_or_create(
            slug=catalog_data.MARKED_LICENSE_SLUG,
            version="1.0",
            defaults={"title": "Tiny-Marked Research License", "text": catalog_data.MARKED_LICENSE_TEXT},
        )
        with tempfile.TemporaryDirectory(prefix="tiny-marked-") as tmp:
            catalog_data.write_marked_demo(tmp)
            call_command(
                "register_release",
                catalog_data.MARKED_REPO_ID,
                from_dir=Path(tmp),
                access="gated",
                license=catalog_data.MARKED_LICENSE_SLUG,
                display_name="Tiny Marked",
                parameters=catalog_data.MARKED_PARAMETERS,
                mark=len(catalog_data.MARKED_DEMO_FILES),
                variants=4,
                piece_size=DEMO_PIECE_SIZE,
                notes="Marked demo weights",
                stdout=self.stdout,
            )

    def _institution(self, actor):
        """Demo University, confirmed, with the demo OpenID Provider `make run` starts (created once; an
        administrator's later edits are kept)."""
        if Institution.objects.filter(ror_id=catalog_data.DEMO_INSTITUTION["ror_id"]).exists():
            return
        issuer = os.environ.get("OIDC_DEMO_UNIVERSITY_ISSUER") or catalog_data.DEMO_INSTITUTION["issuer"]
        institution = services.institution_create(
            actor=actor,
            ror_id=catalog_data.DEMO_INSTITUTION["ror_id"],
            name=catalog_data.DEMO_INSTITUTION["name"],
            email_domains=[catalog_data.DEMO_INSTITUTION["domain"]],
            issuers=[issuer],
        )
        services.institution_confirm(actor=actor, institution=institution)
        self.stdout.write(f"{institution.name}: confirmed, sign-in issuer {issuer}")

    def _documents(self, release, actor):
        """The demo releases' documents and what it takes to run them, added once (a manager's later versions
        and edits are kept)."""
        footprint = catalog_data.RELEASE_FOOTPRINTS.get(release.name)
        if footprint and not release.weights_dtype:
            services.release_set_footprint(actor=actor, release=release, changes=footprint)
        for fields in catalog_data.release_documents(release.name):
            if not ReleaseDocument.objects.filter(release=release, title=fields["title"]).exists():
                services.document_create(actor=actor, release=release, **fields)

    def _questions(self, release, actor):
        """The demo releases' own questions, added once (a manager's later edits are kept)."""
        for key, fields in catalog_data.release_questions(release.name):
            if not AccessQuestion.objects.filter(release=release, key=key).exists():
                services.question_create(actor=actor, release=release, key=key, fields=fields)
