import secrets
from datetime import timedelta

import pgtrigger
from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_countries.fields import CountryField

from .domains import declarable


def new_public_id() -> str:
    """128 random bits: the id in every URL that names a request, grant or batch (never the primary key)."""
    return secrets.token_hex(16)


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        email = self.normalize_email(email)
        user = self.model(email=email, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A portal account; people sign in with their email address."""

    username = None
    email = models.EmailField(_("email address"), unique=True)
    # The language the person last chose in the interface (the browser's at sign-up): every email is written in it.
    language = models.CharField(_("language"), max_length=10, blank=True, default="", choices=settings.LANGUAGES)
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []
    objects = UserManager()

    class Meta:
        permissions = [
            ("review_accessrequest", "Can review access requests and manage grants"),
            ("manage_release", "Can manage release policies: access forms, license versions and revisions"),
        ]

    def __str__(self):
        return self.email


class TimeStamped(models.Model):
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class License(TimeStamped):
    """One version of a license: a license is every row with the same slug. Versions are never edited once
    published; a change is a new version, which releases then move to."""

    slug = models.SlugField(max_length=100)
    version = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    text = models.TextField()
    summary_of_changes = models.TextField(blank=True, help_text=_("What changed since the previous version"))
    summary_of_changes_zh_hans = models.TextField(
        blank=True, help_text=_("What changed, in Simplified Chinese; Chinese readers see it when set")
    )
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["slug", "version"], name="license_slug_version_unique")]

    def __str__(self):
        return f"{self.title} (v{self.version})"

    def summary_in(self, language: str) -> str:
        """The summary of changes in the reader's language where the license provides one."""
        if (language or "").startswith("zh") and self.summary_of_changes_zh_hans:
            return self.summary_of_changes_zh_hans
        return self.summary_of_changes


class ModelRelease(TimeStamped):
    # The bounds of the release's numbers (inclusive), for every form and service that sets them.
    REVIEW_DEADLINE_DAYS = (1, 365)
    LAB_MEMBER_CAP = (0, 10_000)

    class Access(models.TextChoices):
        OPEN = "open", _("Open")
        GATED = "gated", _("Gated")

    class LicenseUpdateMode(models.TextChoices):
        RECONSENT = "reconsent", _("Holders accept the new version themselves")
        REVIEW = "review", _("Holders accept the new version and a reviewer approves them again")

    class WeightsDtype(models.TextChoices):
        FP32 = "fp32", "fp32"
        BF16 = "bf16", "bf16"
        FP16 = "fp16", "fp16"
        INT8 = "int8", "int8"
        INT4 = "int4", "int4"

    repo_id = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200)
    parameters = models.BigIntegerField(null=True, blank=True, help_text=_("Parameter count"))
    description = models.TextField(blank=True, help_text=_("Model card (Markdown)"))
    description_zh_hans = models.TextField(
        blank=True, help_text=_("Model card in Simplified Chinese (Markdown); Chinese readers see it when set")
    )
    access = models.CharField(max_length=10, choices=Access.choices, default=Access.OPEN)
    license = models.ForeignKey(License, on_delete=models.PROTECT, null=True, blank=True, related_name="releases")
    # The 40-hex id of `main`, the latest published revision (what Hugging Face clients see as the commit).
    revision = models.CharField(max_length=40, blank=True, help_text=_("40-hex id derived from the file list"))
    main_revision = models.ForeignKey(
        "ReleaseRevision", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    license_update_mode = models.CharField(
        max_length=10, choices=LicenseUpdateMode.choices, default=LicenseUpdateMode.RECONSENT
    )
    published = models.BooleanField(default=True)
    # ISO 3166 codes: requests declaring one are refused at submission, and holders from one at the gate.
    restricted_countries = models.JSONField(default=list, blank=True, editable=False)
    lab_member_cap = models.PositiveIntegerField(
        default=25,
        validators=[MinValueValidator(LAB_MEMBER_CAP[0]), MaxValueValidator(LAB_MEMBER_CAP[1])],
        help_text=_("How many members an 'all members' lab grant covers without a reviewer's approval"),
    )
    review_deadline_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MinValueValidator(REVIEW_DEADLINE_DAYS[0]), MaxValueValidator(REVIEW_DEADLINE_DAYS[1])],
        help_text=_("Days a request may wait for a reviewer before it is overdue."),
    )
    # Flaw reports (access.services.flaws): who may file them besides holders, and how long one may wait for triage.
    flaw_reports_from_verified = models.BooleanField(
        default=False,
        help_text=_("Accept flaw reports from any account with a verified email, not only from holders."),
    )
    triage_deadline_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MinValueValidator(REVIEW_DEADLINE_DAYS[0]), MaxValueValidator(REVIEW_DEADLINE_DAYS[1])],
        help_text=_("Days a flaw report may wait for triage before it is overdue."),
    )
    # Revisions registered while this is on are marked: every holder receives their own variant of each marked
    # weight file (access.marking). Turned on by a release manager (services.release_marking_enable).
    marking = models.BooleanField(default=False, editable=False)
    transparency_public = models.BooleanField(
        default=False,
        help_text=_(
            "Publish a page with this release's request numbers: requests received, approval rate by "
            "organization type, median time to decision (aggregates only)."
        ),
    )
    # What it takes to run it (access.footprint): the precision the weights are stored in, as the release
    # manager says (the portal never unpickles a file to guess it), and the training emissions as Hugging Face's
    # `co2_eq_emissions` metadata gives them.
    weights_dtype = models.CharField(
        max_length=8,
        choices=WeightsDtype.choices,
        blank=True,
        help_text=_("The precision the weights are stored in (blank: not stated)"),
    )
    co2_eq_emissions = models.FloatField(
        null=True, blank=True, help_text=_("Training emissions in grams of CO2 equivalent (co2_eq_emissions.emissions)")
    )
    co2_source = models.CharField(max_length=300, blank=True, help_text=_("Where the emissions figure comes from"))
    co2_training_type = models.CharField(max_length=40, blank=True, help_text=_("pre-training or fine-tuning"))
    co2_geographical_location = models.CharField(max_length=200, blank=True)
    co2_hardware_used = models.CharField(max_length=200, blank=True)

    # Stewardship (access.services.stewardship): what a release asks of its holders, and its public register.
    progress_report_required = models.BooleanField(
        default=False,
        help_text=_("A renewal must carry a progress report (and always goes to a reviewer)."),
    )
    closeout_required = models.BooleanField(
        default=False,
        help_text=_("A new request is refused while its applicant (or lab) has an outstanding close-out here."),
    )
    public_register = models.BooleanField(
        default=False,
        help_text=_("Publish a register of approved uses: applicants who consent, with their public statement."),
    )

    class Meta:
        ordering = ["parameters", "repo_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(repo_id__regex=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$"), name="release_repo_id_format"
            ),
            models.CheckConstraint(
                condition=Q(revision="") | Q(revision__regex=r"^[0-9a-f]{40}$"), name="release_revision_hex"
            ),
            models.CheckConstraint(
                condition=~Q(access="gated") | Q(license__isnull=False), name="release_gated_needs_license"
            ),
            models.CheckConstraint(
                condition=Q(review_deadline_days__gte=1, review_deadline_days__lte=365),
                name="release_review_deadline_range",
            ),
            models.CheckConstraint(
                condition=Q(triage_deadline_days__gte=1, triage_deadline_days__lte=365),
                name="release_triage_deadline_range",
            ),
            models.CheckConstraint(
                condition=Q(co2_eq_emissions__isnull=True) | Q(co2_eq_emissions__gte=0),
                name="release_co2_non_negative",
            ),
        ]

    def __str__(self):
        return self.repo_id

    def description_in(self, language: str) -> str:
        """The model card in the reader's language where the release provides one."""
        if (language or "").startswith("zh") and self.description_zh_hans:
            return self.description_zh_hans
        return self.description

    @property
    def is_gated(self):
        return self.access == self.Access.GATED

    @property
    def namespace(self):
        return self.repo_id.split("/", 1)[0]

    @property
    def name(self):
        return self.repo_id.split("/", 1)[1]

    @property
    def files(self):
        """The files of `main`, the latest published revision (older revisions: `revision.files`)."""
        if self.main_revision_id is None:
            return ModelFile.objects.none()
        return ModelFile.objects.filter(revision_id=self.main_revision_id)


# Once a revision is published, its files never change: no file joins or leaves it and none is edited.
# The services keep to this; on PostgreSQL these triggers make sure nothing else can break it.
FILE_IMMUTABLE_SQL = """
IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.revision_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM access_releaserevision r WHERE r.id = OLD.revision_id AND r.published_at IS NOT NULL
) THEN
    RAISE EXCEPTION 'the files of published revision % cannot change', OLD.revision_id;
END IF;
IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.revision_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM access_releaserevision r WHERE r.id = NEW.revision_id AND r.published_at IS NOT NULL
) THEN
    RAISE EXCEPTION 'no file can be added to published revision %', NEW.revision_id;
END IF;
IF TG_OP = 'DELETE' THEN
    RETURN OLD;
END IF;
RETURN NEW;
"""
REVISION_IMMUTABLE_SQL = """
IF OLD.published_at IS NOT NULL AND (
    TG_OP = 'DELETE' OR NEW.sha IS DISTINCT FROM OLD.sha OR NEW.number IS DISTINCT FROM OLD.number
    OR NEW.release_id IS DISTINCT FROM OLD.release_id OR NEW.published_at IS DISTINCT FROM OLD.published_at
) THEN
    RAISE EXCEPTION 'published revision % cannot change (only its notes can)', OLD.id;
END IF;
IF TG_OP = 'DELETE' THEN
    RETURN OLD;
END IF;
RETURN NEW;
"""


class ReleaseRevision(models.Model):
    """One published state of a release's files. `main` is the newest; older ones stay downloadable by id."""

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    sha = models.CharField(max_length=40, help_text=_("40-hex id of the revision"))
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["release", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["release", "number"], name="revision_release_number_unique"),
            models.UniqueConstraint(fields=["release", "sha"], name="revision_release_sha_unique"),
            models.CheckConstraint(condition=Q(sha__regex=r"^[0-9a-f]{40}$"), name="revision_sha_hex"),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="published_revision_immutable",
                when=pgtrigger.Before,
                operation=pgtrigger.Update | pgtrigger.Delete,
                func=REVISION_IMMUTABLE_SQL,
            )
        ]

    def __str__(self):
        return f"{self.release.repo_id}@{self.number} ({self.sha[:12]})"


class ModelFile(TimeStamped):
    """A file of one revision. Files registered but not yet published have no revision (the release's draft)."""

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="all_files")
    revision = models.ForeignKey(
        ReleaseRevision, on_delete=models.PROTECT, null=True, blank=True, related_name="files", editable=False
    )
    path = models.CharField(max_length=500)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=1000)
    # SHA-256 of each piece_size piece, concatenated hex digests (the last piece may be shorter). Set with
    # the file's sha256 in the same pass and never changed while the file is; 0 and "" for files registered
    # before pieces were hashed (clients then verify the whole file only).
    piece_size = models.PositiveIntegerField(default=0)
    pieces = models.TextField(blank=True, default="")
    # How many marked variants the file has (0: unmarked). A marked file's own record is the original, stored
    # under access.marking.ORIGINALS_PREFIX and never signed; each person is served one of its FileVariants.
    mark_variants = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(
                fields=["revision", "path"], condition=Q(revision__isnull=False), name="file_revision_path_unique"
            ),
            models.UniqueConstraint(
                fields=["release", "path"], condition=Q(revision__isnull=True), name="file_draft_path_unique"
            ),
            models.CheckConstraint(condition=Q(size__gte=0), name="file_size_non_negative"),
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="file_sha256_hex"),
            models.CheckConstraint(
                condition=Q(piece_size=0, pieces="") | Q(piece_size__gt=0, pieces__regex=r"^([0-9a-f]{64})*$"),
                name="file_pieces_hex",
            ),
        ]
        indexes = [models.Index(fields=["storage_key"], name="file_storage_key_idx")]
        triggers = [
            pgtrigger.Trigger(
                name="published_files_immutable",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                func=FILE_IMMUTABLE_SQL,
            )
        ]

    def __str__(self):
        return f"{self.release.repo_id}/{self.path}"

    @property
    def piece_hashes(self) -> list[str]:
        return split_pieces(self.pieces)


def split_pieces(joined: str) -> list[str]:
    return [joined[i : i + 64] for i in range(0, len(joined), 64)]


# A variant never changes, and one of a published revision's file is never added or removed (a draft's may be).
VARIANT_IMMUTABLE_SQL = """
IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'file variant % cannot change', OLD.id;
END IF;
IF TG_OP = 'DELETE' AND EXISTS (
    SELECT 1 FROM access_modelfile f JOIN access_releaserevision r ON r.id = f.revision_id
    WHERE f.id = OLD.file_id AND r.published_at IS NOT NULL
) THEN
    RAISE EXCEPTION 'the variants of a published file cannot be removed (file %)', OLD.file_id;
END IF;
IF TG_OP = 'INSERT' AND EXISTS (
    SELECT 1 FROM access_modelfile f JOIN access_releaserevision r ON r.id = f.revision_id
    WHERE f.id = NEW.file_id AND r.published_at IS NOT NULL
) THEN
    RAISE EXCEPTION 'no variant can be added to a published file (file %)', NEW.file_id;
END IF;
IF TG_OP = 'DELETE' THEN
    RETURN OLD;
END IF;
RETURN NEW;
"""


class FileVariant(models.Model):
    """One marked variant of a file: its own object, size, SHA-256 and piece hashes. Never changed once written
    (a database trigger refuses it); a file kept into a new revision has its variants copied with it."""

    file = models.ForeignKey(ModelFile, on_delete=models.CASCADE, related_name="variants")
    variant = models.PositiveSmallIntegerField()
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=1000)
    piece_size = models.PositiveIntegerField(default=0)
    pieces = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["file", "variant"]
        constraints = [
            models.UniqueConstraint(fields=["file", "variant"], name="file_variant_unique"),
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="file_variant_sha256_hex"),
        ]
        indexes = [models.Index(fields=["storage_key"], name="file_variant_key_idx")]
        triggers = [
            pgtrigger.Trigger(
                name="variant_immutable",
                when=pgtrigger.Before,
                operation=pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete,
                func=VARIANT_IMMUTABLE_SQL,
            )
        ]

    def __str__(self):
        return f"{self.file} variant {self.variant}"

    @property
    def piece_hashes(self) -> list[str]:
        return split_pieces(self.pieces)


class MarkingCodeword(models.Model):
    """That a person holds a codeword in a marked release, and which attempt gave it (access.marking.marks_for
    computes the codeword from MARKING_KEY). The codeword itself is never stored; its keyed fingerprint is, unique
    in the release, so no two people share one. Never changed or removed: a codeword is never reused."""

    release = models.ForeignKey(ModelRelease, on_delete=models.PROTECT, related_name="codewords")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="codewords")
    attempt = models.PositiveIntegerField(default=0)
    fingerprint = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["release", "user"], name="codeword_release_user_unique"),
            models.UniqueConstraint(fields=["release", "fingerprint"], name="codeword_release_fingerprint_unique"),
        ]
        triggers = [pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)]

    def __str__(self):
        return f"codeword {self.fingerprint[:8]} in release {self.release_id}"


class ReleaseMirror(TimeStamped):
    """Whether a configured mirror (see STORAGE_MIRRORS) holds a verified copy of a release. A mirror serves
    a release only while enabled for the release's current revision; only the mirror services write this."""

    class Status(models.TextChoices):
        ENABLED = "enabled", _("Enabled")
        FAILED = "failed", _("Verification failed")
        DISABLED = "disabled", _("Disabled")

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="mirrors")
    mirror = models.CharField(max_length=32)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DISABLED)
    revision = models.CharField(max_length=40, blank=True, help_text=_("The release revision last verified"))
    verified_at = models.DateTimeField(null=True, blank=True)
    files_checked = models.PositiveIntegerField(default=0)
    bytes_checked = models.BigIntegerField(default=0)
    differences = models.JSONField(default=list, blank=True, help_text=_("[{path, problem, expected, found}]"))

    class Meta:
        ordering = ["release", "mirror"]
        constraints = [
            models.UniqueConstraint(fields=["release", "mirror"], name="release_mirror_unique"),
            models.CheckConstraint(
                condition=~Q(status="enabled") | Q(revision__regex=r"^[0-9a-f]{40}$"),
                name="release_mirror_enabled_has_revision",
            ),
        ]

    def __str__(self):
        return f"{self.release.repo_id} on {self.mirror} ({self.status})"


QUESTION_KEY_RE = r"^[a-z][a-z0-9_]{0,39}$"


class AccessQuestion(models.Model):
    """An extra question of a release's access form. Once a release has requests, a change makes a new version
    of the question (the old one is retired), so every answer keeps the text it answered."""

    class Kind(models.TextChoices):
        SHORT_TEXT = "short_text", _("Short text")
        LONG_TEXT = "long_text", _("Long text")
        CHOICE = "choice", _("Single choice")
        MULTIPLE_CHOICE = "multiple_choice", _("Multiple choice")
        COUNTRY = "country", _("Country")
        DATE = "date", _("Date")
        ATTESTATION = "attestation", _("Checkbox (attestation)")
        URL = "url", _("URL")
        EMAIL = "email", _("Email")
        FILE = "file", _("File upload (PDF, PNG, JPEG)")

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="questions")
    key = models.CharField(max_length=40, help_text=_("The question's id in the API: lower case, digits, _"))
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    label_en = models.CharField(max_length=300)
    label_zh = models.CharField(max_length=300, blank=True)
    help_en = models.TextField(blank=True)
    help_zh = models.TextField(blank=True)
    required = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)
    # choices: [{"value", "label_en", "label_zh"}]; long text: min_length, max_length; file: max_size, types
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["release", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["release", "key", "version"], name="question_key_version_unique"),
            models.UniqueConstraint(
                fields=["release", "key"], condition=Q(retired_at__isnull=True), name="question_one_current_per_key"
            ),
            models.CheckConstraint(condition=Q(key__regex=QUESTION_KEY_RE), name="question_key_format"),
        ]

    def __str__(self):
        return f"{self.release.repo_id}:{self.key} v{self.version}"

    def label(self, language: str = "") -> str:
        return (self.label_zh if language.startswith("zh") else "") or self.label_en

    def help(self, language: str = "") -> str:
        return (self.help_zh if language.startswith("zh") else "") or self.help_en

    def choices(self, language: str = "") -> list[tuple[str, str]]:
        zh = language.startswith("zh")
        return [
            (str(c["value"]), (c.get("label_zh") if zh else "") or c.get("label_en") or str(c["value"]))
            for c in self.options.get("choices", [])
        ]


class AccessRequestQuerySet(models.QuerySet):
    def open(self):
        """Waiting on a reviewer or on the applicant: at most one per applicant and release."""
        return self.filter(status__in=AccessRequest.OPEN_STATUSES)


class AccessRequest(TimeStamped):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft (not submitted)")
        PENDING = "pending", _("Pending review")
        NEEDS_INFO = "needs_info", _("More information needed")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    OPEN_STATUSES = (Status.PENDING, Status.NEEDS_INFO)
    # At most one of these per applicant and release: a draft waits for its uploads, then is submitted.
    UNFINISHED_STATUSES = (Status.DRAFT, Status.PENDING, Status.NEEDS_INFO)

    class Origin(models.TextChoices):
        APPLICANT = "applicant", _("Filed by the applicant")
        # A reviewer gave access to someone who had not applied (the Hugging Face `grant_access` call): the
        # applicant accepted no license and attested nothing through the portal, and the record says so.
        REVIEWER = "reviewer", _("Granted by a reviewer without an application")

    class OrganizationType(models.TextChoices):
        ACADEMIC = "academic", _("Academic")
        GOVERNMENT = "government", _("Government")
        NONPROFIT = "nonprofit", _("Non-profit / civil society")
        INDUSTRY_RESEARCH = "industry_research", _("Industry research lab")
        OTHER = "other", _("Other")

    # Not guessable: request pages are addressed by this, never by the sequential primary key.
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    applicant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests")
    release = models.ForeignKey(ModelRelease, on_delete=models.PROTECT, related_name="access_requests")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)

    full_name = models.CharField(max_length=200)
    email = models.EmailField()
    affiliation = models.CharField(max_length=300)
    organization_type = models.CharField(max_length=30, choices=OrganizationType.choices)
    country = CountryField()
    role = models.CharField(max_length=200)
    intended_use = models.TextField()
    publications = models.TextField(blank=True)
    # The answers to the release's own questions, as one text for the reviewer queue's search.
    answers_text = models.TextField(blank=True, editable=False)

    license = models.ForeignKey(License, on_delete=models.PROTECT, related_name="+")
    license_version = models.CharField(max_length=40)
    license_accepted_at = models.DateTimeField()
    license_accepted_ip = models.GenericIPAddressField(null=True, blank=True)
    noncommercial_attested = models.BooleanField(default=False)

    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_reason = models.TextField(blank=True)
    info_request = models.TextField(blank=True)
    info_response = models.TextField(blank=True)
    # When the reviewer last asked (needs_info), and when the applicant was reminded of it: a question left
    # unanswered for NEEDS_INFO_REMINDER_DAYS is reminded once, then the request is closed.
    info_requested_at = models.DateTimeField(null=True, blank=True)
    info_reminded_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    renewal_of = models.ForeignKey("Grant", on_delete=models.SET_NULL, null=True, blank=True, related_name="renewals")
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.APPLICANT)
    # A grant holder accepting a new license version of a release that asks for a new review: approving this
    # request moves that grant to the new version instead of issuing another grant.
    reconsent_of = models.ForeignKey(
        "Grant", on_delete=models.SET_NULL, null=True, blank=True, related_name="license_reviews"
    )
    # A lab request: the applicant (an owner or admin) applies for the lab; it covers the named members or all.
    lab = models.ForeignKey("Lab", on_delete=models.PROTECT, null=True, blank=True, related_name="access_requests")
    all_members = models.BooleanField(default=False)
    # Approved automatically: the release's decision rule that matched, and the verified facts it matched on.
    decided_by_rule = models.ForeignKey(
        "DecisionRule", on_delete=models.PROTECT, null=True, blank=True, related_name="decided_requests"
    )
    rule_facts = models.JSONField(default=list, blank=True, editable=False)
    covered_members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    # The public register of uses (when the release keeps one): consent on the form, and a statement written for
    # the public, separate from the private intended use. Withdrawing consent takes the entry out.
    register_consent = models.BooleanField(default=False)
    public_statement = models.TextField(blank=True)
    register_withdrawn_at = models.DateTimeField(null=True, blank=True)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["applicant", "release"],
                condition=Q(status__in=["draft", "pending", "needs_info"], lab__isnull=True),
                name="request_one_open_per_applicant_release",
            ),
            models.UniqueConstraint(
                fields=["lab", "release"],
                condition=Q(status__in=["draft", "pending", "needs_info"], lab__isnull=False),
                name="request_one_open_per_lab_release",
            ),
            models.CheckConstraint(
                condition=Q(noncommercial_attested=True) | Q(origin="reviewer"),
                name="request_attested",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at", "id"], name="request_queue_idx"),
            models.Index(fields=["release", "status", "created_at"], name="request_release_queue_idx"),
            models.Index(fields=["country", "status", "created_at"], name="request_country_queue_idx"),
            models.Index(fields=["organization_type", "status", "created_at"], name="request_orgtype_queue_idx"),
            # The dashboard's decisions in a date range (times, organization types, countries) and the applicants'
            # typical wait, as index-only scans: the columns they group by ride along.
            models.Index(
                fields=["decided_at"],
                include=["release", "status", "origin", "organization_type", "country", "created_at"],
                condition=Q(decided_at__isnull=False),
                name="request_decided_idx",
            ),
            # Requests submitted in a date range by status (the dashboard's weeks), index-only.
            models.Index(fields=["created_at"], include=["status", "release"], name="request_submitted_idx"),
            # Requests waiting for a reviewer, by age and release (pending ages, overdue counts).
            models.Index(
                fields=["created_at"], include=["release"], condition=Q(status="pending"), name="request_pending_idx"
            ),
            models.Index(
                fields=["status", "info_requested_at"],
                condition=Q(status="needs_info"),
                name="request_needs_info_idx",
            ),
        ]

    def __str__(self):
        return f"{self.full_name} → {self.release.repo_id} ({self.status})"

    @property
    def is_open(self):
        return self.status in self.OPEN_STATUSES


class RequestAnswer(models.Model):
    """An answer to one version of a release's question (a file question's answer is an attachment id)."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(AccessQuestion, on_delete=models.PROTECT, related_name="answers")
    value = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["question__position", "question_id"]
        constraints = [models.UniqueConstraint(fields=["request", "question"], name="answer_one_per_question")]

    def __str__(self):
        return f"{self.request_id}:{self.question.key}"


class KeptAttachments(models.Manager):
    """Attachments the applicant has not removed: what every page, export and API shows (the default manager,
    so a request's `attachments` are these too)."""

    def get_queryset(self):
        return super().get_queryset().filter(removed_at__isnull=True)


class RequestAttachment(models.Model):
    """A file an applicant uploaded for a file question; kept in storage, readable only by reviewers. A file the
    applicant removes (before review, or while asked for more) is hidden from everyone but still counts toward
    the day's upload bytes; its removal is audited."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="attachments")
    question = models.ForeignKey(AccessQuestion, on_delete=models.PROTECT, related_name="+")
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=50)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=1000)
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    # Every upload, removed ones included: what a person's bytes for the day are counted from.
    uploaded = models.Manager()
    objects = KeptAttachments()

    class Meta:
        ordering = ["created_at", "id"]
        default_manager_name = "objects"
        base_manager_name = "uploaded"

    def __str__(self):
        return self.filename


class ReasonTemplate(TimeStamped):
    class Kind(models.TextChoices):
        APPROVE = "approve", _("Approval")
        REJECT = "reject", _("Rejection")
        REQUEST_INFO = "request_info", _("Request for information")
        REVOKE = "revoke", _("Revocation")

    kind = models.CharField(max_length=20, choices=Kind.choices)
    title = models.CharField(max_length=100)
    text = models.TextField()
    text_zh_hans = models.TextField(
        blank=True, help_text=_("The text in Simplified Chinese; applicants who read Chinese get it when set")
    )

    class Meta:
        ordering = ["kind", "title"]
        constraints = [models.UniqueConstraint(fields=["kind", "title"], name="reason_template_unique")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.title}"

    def text_in(self, language: str) -> str:
        """The reason in the applicant's language where it has one."""
        if (language or "").startswith("zh") and self.text_zh_hans:
            return self.text_zh_hans
        return self.text


class GrantQuerySet(models.QuerySet):
    def active(self, now=None):
        """The one definition of an active grant: issued, not expired, not revoked."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())


class Grant(TimeStamped):
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants")
    release = models.ForeignKey(ModelRelease, on_delete=models.PROTECT, related_name="grants")
    request = models.OneToOneField(AccessRequest, on_delete=models.PROTECT, related_name="grant")
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    expired_notified_at = models.DateTimeField(null=True, blank=True)
    issued_email_sent_at = models.DateTimeField(null=True, blank=True)
    # The license version the holder accepted last; downloads need it to be the release's current one.
    license = models.ForeignKey(License, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    license_accepted_at = models.DateTimeField(null=True, blank=True)
    license_accepted_ip = models.GenericIPAddressField(null=True, blank=True)
    # A lab grant reaches the lab's covered members through their seats (LabSeat), never through `user` (the
    # applicant): access follows membership.
    lab = models.ForeignKey("Lab", on_delete=models.PROTECT, null=True, blank=True, related_name="grants")
    # What the grant rested on: the verified facts of the rule that approved it, and the declared country.
    rested_on = models.JSONField(default=list, blank=True, editable=False)
    country = models.CharField(max_length=2, blank=True, editable=False)
    # A grant approved on a provider's affiliation (faculty@uni.example) lasts while a sign-in through that
    # institution asserts it again within AFFILIATION_MAX_AGE_DAYS; one that no longer asserts it suspends it.
    affiliation = models.CharField(max_length=300, blank=True, editable=False)
    affiliation_institution = models.ForeignKey(
        "Institution", on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    affiliation_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    reverify_warned_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the holder (or, for a lab, its owner or an admin) closed the access themselves; it expired then.
    closed_at = models.DateTimeField(null=True, blank=True)
    # A grant a rule approved on a library card lasts while the card does (the gate reads its dates).
    card = models.ForeignKey(
        "LibraryCard", on_delete=models.PROTECT, null=True, blank=True, related_name="grants", editable=False
    )

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at"]
        indexes = [
            models.Index(fields=["user", "release", "expires_at"], name="grant_lookup_idx"),
            # Active grants per day on the dashboard, index-only.
            models.Index(
                fields=["issued_at"], include=["release", "expires_at", "revoked_at"], name="grant_issued_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("issued_at")), name="grant_expires_after_issue")
        ]

    def __str__(self):
        return f"{self.user} → {self.release.repo_id}"

    @property
    def is_active(self):
        # The same rule as GrantQuerySet.active, for a row already loaded.
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def renewal_window_open(self) -> bool:
        """Whether the holder may ask for a renewal: not revoked, and expiring within GRANT_EXPIRY_WARNING_DAYS (the
        window the expiry warning is emailed in) or already expired."""
        soon = timezone.now() + timedelta(days=settings.GRANT_EXPIRY_WARNING_DAYS)
        return self.revoked_at is None and self.expires_at <= soon

    @property
    def license_current(self) -> bool:
        """Whether the holder accepted the license version the release is on now (compares ids only)."""
        return self.license_id is not None and self.license_id == self.release.license_id


class UrlBatch(TimeStamped):
    """One set of signed URLs for every file of a grant's release; the newest ready one is current."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Being issued")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="batches")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True)
    urls = models.JSONField(default=list, blank=True, help_text=_("[{path, size, sha256, url}]"))
    revision = models.CharField(max_length=40, blank=True, help_text=_("The revision whose files it signs"))

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.grant} batch {self.created_at:%Y-%m-%d %H:%M} ({self.status})"


class Institution(TimeStamped):
    """A university or research organisation, keyed by its ROR id, with what identifies it: its email domains,
    the issuers of its own OpenID Providers, and its identity providers' entity ids (as CILogon names them).
    Only an institution portal staff confirmed verifies anything (access.identities)."""

    ror_id = models.CharField(
        max_length=9, unique=True, help_text=_("Research Organization Registry id, e.g. 02mhbdp94")
    )
    name = models.CharField(max_length=200)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(ror_id__regex=r"^0[a-z0-9]{6}[0-9]{2}$"), name="institution_ror_id")
        ]

    def __str__(self):
        return self.name

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    def identifiers_of(self, kind: str) -> list[str]:
        return sorted(i.value for i in self.identifiers.all() if i.kind == kind)


class InstitutionIdentifier(models.Model):
    """One email domain, OIDC issuer or IdP entity id of an institution: each names one institution only."""

    class Kind(models.TextChoices):
        EMAIL_DOMAIN = "email_domain", _("Email domain")
        OIDC_ISSUER = "oidc_issuer", _("OpenID Connect issuer")
        IDP_ENTITY_ID = "idp_entity_id", _("Identity provider entity id")

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="identifiers")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    value = models.CharField(max_length=500)

    class Meta:
        ordering = ["kind", "value"]
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="institution_identifier_unique")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.value}"


class VerifiedIdentity(models.Model):
    """What an OpenID Provider asserted about an account at its last sign-in through it, refreshed at every one
    (access.services.identities). The assertions are kept as made; which of them count as verified affiliations
    is decided when they are read (access.identities), against the institutions as confirmed then."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="verified_identities")
    # The allauth link this identity's facts belong to: unlinking removes both.
    account = models.OneToOneField(
        "socialaccount.SocialAccount", on_delete=models.CASCADE, related_name="verified_identity"
    )
    provider = models.CharField(max_length=40, help_text=_("The provider id in OIDC_PROVIDERS"))
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    orcid = models.CharField(max_length=19, blank=True, help_text=_("ORCID iD, e.g. 0000-0002-1825-0097"))
    institution = models.ForeignKey(
        Institution, on_delete=models.SET_NULL, null=True, blank=True, related_name="verified_identities"
    )
    idp_entity_id = models.CharField(max_length=500, blank=True, help_text=_("The university's IdP, via CILogon"))
    name = models.CharField(max_length=200, blank=True)
    affiliations = models.JSONField(default=list, blank=True, help_text=_("Scoped affiliations as asserted"))
    assurance = models.JSONField(default=list, blank=True)
    principal_name = models.CharField(max_length=254, blank=True)
    verified_email = models.EmailField(blank=True, help_text=_("An email address the provider asserted as verified"))
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["first_seen_at", "id"]
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="verified_identity_unique")]
        indexes = [models.Index(fields=["orcid"], name="verified_identity_orcid_idx")]

    def __str__(self):
        return f"{self.user} via {self.provider}"


class Lab(TimeStamped):
    """A research group that applies once for its members (a principal investigator owns it)."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=200)
    ror_id = models.CharField(
        max_length=9, blank=True, help_text=_("Research Organization Registry id, e.g. 02mhbdp94")
    )
    website = models.URLField(blank=True)
    email_domains = models.TextField(
        blank=True,
        help_text=_(
            "Email domains the lab's owner declared for the institution, one per line; not checked by the portal"
        ),
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Chosen by the lab's owner among the confirmed institutions: members verified there are shown so.
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="labs")

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ror_id="") | Q(ror_id__regex=r"^0[a-z0-9]{6}[0-9]{2}$"), name="lab_ror_id"
            )
        ]

    def __str__(self):
        return self.name

    @property
    def domains(self) -> list[str]:
        """The email domains the lab's owner declared, less any that the rule of access.domains refuses (free
        email providers, public suffixes): one stored before the rule is not shown and marks no member."""
        declared = [line.strip().lower() for line in self.email_domains.splitlines() if line.strip()]
        return [domain for domain in declared if declarable(domain)]

    def on_declared_domain(self, email: str) -> bool:
        """Whether an address is on one of the domains the lab's owner declared (or a subdomain of one). The
        portal has not checked that a declared domain is the institution's: this is never "verified"."""
        domain = email.rsplit("@", 1)[-1].lower()
        return any(domain == d or domain.endswith("." + d) for d in self.domains)


class LabMembershipQuerySet(models.QuerySet):
    def current(self):
        return self.filter(left_at__isnull=True)


class LabMembership(TimeStamped):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        MEMBER = "member", _("Member")

    class Ending(models.TextChoices):
        LEFT = "left", _("Left")
        REMOVED = "removed", _("Removed")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="lab_memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)
    ending = models.CharField(max_length=10, choices=Ending.choices, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = LabMembershipQuerySet.as_manager()

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lab", "user"], condition=Q(left_at__isnull=True), name="lab_one_current_membership"
            ),
            models.UniqueConstraint(
                fields=["lab"], condition=Q(left_at__isnull=True, role="owner"), name="lab_one_owner"
            ),
        ]
        indexes = [models.Index(fields=["user", "left_at"], name="lab_membership_user_idx")]

    def __str__(self):
        return f"{self.user} in {self.lab} ({self.role})"

    @property
    def is_current(self):
        return self.left_at is None


class LabInvitation(TimeStamped):
    """A single-use link emailed to a person; accepting needs a signed-in account with that verified email."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=LabMembership.Role.choices, default=LabMembership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(role="owner"), name="lab_invitation_not_owner"),
        ]

    def __str__(self):
        return f"{self.email} → {self.lab}"

    @property
    def is_usable(self):
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class LabSeat(TimeStamped):
    """One member's place on a lab grant: covered (by name, within the cap, or by a reviewer's approval) and the
    license version that member accepted personally. A seat allows downloads only while it is active, its
    holder is a current member of the lab, the grant is active and the accepted version is the release's."""

    class Status(models.TextChoices):
        LICENSE_PENDING = "license_pending", _("Covered, license not yet accepted")
        ACTIVE = "active", _("Active")
        REQUESTED = "requested", _("Waiting for a reviewer")
        REJECTED = "rejected", _("Not approved")
        ENDED = "ended", _("Ended")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="seats")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="lab_seats")
    status = models.CharField(max_length=20, choices=Status.choices)
    license = models.ForeignKey(License, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    license_accepted_at = models.DateTimeField(null=True, blank=True)
    license_accepted_ip = models.GenericIPAddressField(null=True, blank=True)
    noncommercial_attested = models.BooleanField(default=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # A lab's register entry names this member only if they consent (withdrawable).
    register_consent = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["grant", "user"], name="lab_seat_one_per_member"),
            models.CheckConstraint(
                condition=~Q(status="active") | Q(license__isnull=False, noncommercial_attested=True),
                name="lab_seat_active_accepted",
            ),
        ]
        indexes = [models.Index(fields=["user", "status"], name="lab_seat_user_idx")]

    def __str__(self):
        return f"{self.user} on {self.grant_id} ({self.status})"


class ApiToken(TimeStamped):
    PREFIX = "mp_"

    class Scope(models.TextChoices):
        DOWNLOAD = "download", _("Downloads")
        REVIEW = "review", _("Downloads and reviewer actions")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text=_("First characters of the token, shown to tell tokens apart"))
    secret_hash = models.CharField(max_length=64, unique=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.DOWNLOAD)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def can_review(self):
        return self.scope == self.Scope.REVIEW

    @property
    def is_usable(self):
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class AuditEvent(models.Model):
    """Append-only record of every change to access and every access decision."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # PROTECT, not SET_NULL: nulling the link is an UPDATE the trigger refuses, and history keeps who and what.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    credential = models.CharField(max_length=100, blank=True, help_text=_("session, token:<id>, task or system"))
    action = models.CharField(max_length=60, db_index=True)
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        triggers = [pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action}"


class DownloadEvent(models.Model):
    class Via(models.TextChoices):
        API = "api", _("API redirect")
        MANIFEST = "manifest", _("Manifest")
        HF = "hf", _("Hugging Face compatible")
        WEB = "web", _("Web")
        RELAY = "relay", _("Relay URL (wget lists)")
        DOCUMENT = "document", _("Release document")

    created_at = models.DateTimeField(default=timezone.now)
    # PROTECT everywhere: a CASCADE is a DELETE and a SET_NULL an UPDATE, both refused by the trigger.
    release = models.ForeignKey(ModelRelease, on_delete=models.PROTECT, related_name="+")
    file = models.ForeignKey(ModelFile, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    revision = models.ForeignKey(ReleaseRevision, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    token = models.ForeignKey(ApiToken, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, null=True, blank=True, related_name="downloads")
    via = models.CharField(max_length=10, choices=Via.choices)
    manifest_format = models.CharField(max_length=10, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        triggers = [pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)]
        indexes = [
            # Downloads per day on the dashboard: an index-only scan of the range (PostgreSQL; others ignore
            # the included columns).
            models.Index(fields=["created_at"], include=["release", "user", "file"], name="download_day_idx"),
            models.Index(fields=["release", "created_at"], name="download_release_day_idx"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.via} {self.release_id}/{self.file_id or 'manifest'}"


class OutboundEmail(models.Model):
    """Every email the portal sends; `dedupe_key` makes a retried task send a given notice only once."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dedupe_key = models.CharField(max_length=200, unique=True)
    template = models.CharField(max_length=100)
    to = models.EmailField()
    subject = models.CharField(max_length=300)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.template} → {self.to}"


class DownloadCount(models.Model):
    """Anonymous downloads of open releases, counted per file and hour instead of one row each: the path a
    public model's millions of CI fetches take. Filled from Redis counters by a periodic task."""

    file = models.ForeignKey(ModelFile, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField(help_text=_("Start of the hour (UTC)"))
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["file", "hour"], name="download_count_file_hour_unique")]
        indexes = [models.Index(fields=["hour"], name="download_count_hour_idx")]

    def __str__(self):
        return f"{self.file_id} {self.hour:%Y-%m-%d %H}:00 ×{self.count}"


class DownloadDay(models.Model):
    """Downloads of one closed day, per release and for every release together (`release` empty): what the
    dashboard draws, summed once by a periodic task instead of from a year of events on every page load.
    Derived from DownloadEvent and recomputed from it at will."""

    day = models.DateField()
    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    researchers = models.PositiveIntegerField(default=0, help_text=_("Distinct signed-in users who downloaded"))
    files = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    manifests = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["day"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "release"], condition=Q(release__isnull=False), name="download_day_release_unique"
            ),
            models.UniqueConstraint(fields=["day"], condition=Q(release__isnull=True), name="download_day_all_unique"),
        ]

    def __str__(self):
        return f"{self.day} {self.release_id or 'all'}: {self.files} files"


class DownloadVisitors(models.Model):
    """How many distinct anonymous addresses downloaded from a release on one UTC day: Redis's HyperLogLog
    estimate, copied by the counts' flush (access.counts). The addresses themselves are never stored."""

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    addresses = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["release", "day"], name="download_visitors_release_day")]

    def __str__(self):
        return f"{self.release_id} {self.day}: {self.addresses} addresses"


class DownloadCountBatch(models.Model):
    """A Redis counter hash already added to DownloadCount: a flush that dies before deleting the hash, and runs
    again, adds nothing twice."""

    batch = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.batch


class WebhookEndpoint(TimeStamped):
    """A URL that hears about access events, signed per the Standard Webhooks specification.

    The signing secret is never stored: it is derived from `secret_salt` and the server's key
    (WEBHOOK_SECRET_KEY, else SECRET_KEY), shown once when the endpoint is made, and re-derived to sign."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="webhook_endpoints")
    # Checked by access.webhooks.check_url (https, public addresses), not by a form field's looser rule.
    url = models.CharField(max_length=1000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text=_("Event types delivered; empty for every event."))
    release = models.ForeignKey(
        ModelRelease,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhook_endpoints",
        help_text=_("Only this release's events; empty for every release."),
    )
    secret_salt = models.CharField(max_length=64, default=new_public_id, editable=False)
    active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    # The first failed attempt since the last success; an endpoint failing for long enough is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    # While failing: no attempt before this (the pause after its last failure, or the one attempt in flight).
    paused_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("manage_webhooks", "Can register webhook endpoints and redeliver events")]

    def __str__(self):
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint; its `public_id` is the `webhook-id` every attempt (and redelivery) sends."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RETRYING = "retrying", _("Retrying")
        SUCCEEDED = "succeeded", _("Delivered")
        FAILED = "failed", _("Failed")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    audit_event = models.ForeignKey(AuditEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    event_type = models.CharField(max_length=60)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When the current round of attempts began (creation, or a manual redelivery): retries stop a window later.
    scheduled_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "audit_event"], name="webhook_delivery_once_per_event")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self):
        return f"{self.event_type} → {self.endpoint} ({self.status})"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.public_id}"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: the delivery log."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    succeeded = models.BooleanField(default=False)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.response_code or self.error}"


class DecisionRule(TimeStamped):
    """One of a release's ordered decision rules: conditions (all must hold) and an action; the first current
    rule that matches a request decides it (access.rules). A change retires the rule and makes a new one, so
    every automatic decision names the rule as it was."""

    class Action(models.TextChoices):
        APPROVE = "approve", _("Approve")
        REVIEW = "review", _("Send to a reviewer")
        REFUSE = "refuse", _("Refuse (restricted countries)")

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField()
    action = models.CharField(max_length=10, choices=Action.choices)
    # {"providers": [...], "affiliation_kinds": [...], "institutions": "any" | [ror ids], "email_domains": [...],
    #  "orcid": true, "organization_types": [...], "countries": [...]}
    conditions = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["release", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["release", "position"], condition=Q(retired_at__isnull=True), name="rule_one_per_position"
            ),
        ]

    def __str__(self):
        return f"{self.release.repo_id} rule {self.pk} ({self.action})"


class DisclosureTerms(models.Model):
    """One version of a release's disclosure terms for flaw reports (safe harbour, embargo, credit). Accepted with
    each report and recorded on it; apart from the license: a new version refuses no download and asks no holder
    to accept anything again. Versions are never edited; a change is a new version."""

    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="disclosure_terms")
    version = models.PositiveIntegerField()
    text = models.TextField()
    text_zh_hans = models.TextField(blank=True, help_text=_("The terms in Simplified Chinese; Chinese readers see it"))
    published_at = models.DateTimeField(default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["release", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["release", "version"], name="disclosure_terms_version_unique"),
        ]

    def __str__(self):
        return f"{self.release.repo_id} disclosure terms v{self.version}"

    def text_in(self, language: str) -> str:
        if (language or "").startswith("zh") and self.text_zh_hans:
            return self.text_zh_hans
        return self.text


class FlawReport(TimeStamped):
    """A flaw a researcher found in one or more revisions of a release, in the AI flaw report structure, with the
    disclosure terms they accepted. Its states move only through access.services.flaws."""

    class Category(models.TextChoices):
        HARMFUL_OUTPUT = "harmful_output", _("Harmful or unsafe output")
        BIAS = "bias", _("Bias")
        PRIVACY = "privacy", _("Privacy or memorised data")
        SECURITY = "security", _("Security or jailbreak")
        MISSTATED_CAPABILITY = "misstated_capability", _("Capability misstated in the model card")
        OTHER = "other", _("Other")

    class Severity(models.TextChoices):
        LOW = "low", _("Low")
        MEDIUM = "medium", _("Medium")
        HIGH = "high", _("High")
        CRITICAL = "critical", _("Critical")

    class OtherModels(models.TextChoices):
        UNKNOWN = "unknown", _("Not known")
        YES = "yes", _("Yes, other models may be affected")
        NO = "no", _("No, it seems specific to this model")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        TRIAGED = "triaged", _("Triaged")
        ACCEPTED = "accepted", _("Accepted")
        DECLINED = "declined", _("Declined")
        DUPLICATE = "duplicate", _("Duplicate")
        RESOLVED = "resolved", _("Resolved")

    # Waiting for a first look: what the triage deadline counts.
    UNTRIAGED = (Status.RECEIVED,)
    # Still someone's work: what the queue shows by default.
    OPEN_STATUSES = (Status.RECEIVED, Status.TRIAGED, Status.ACCEPTED)

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    release = models.ForeignKey(ModelRelease, on_delete=models.PROTECT, related_name="flaw_reports")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="flaw_reports")
    revisions = models.ManyToManyField(ReleaseRevision, related_name="flaw_reports")
    title = models.CharField(max_length=200)
    category = models.CharField(max_length=30, choices=Category.choices)
    description = models.TextField()
    reproduction = models.TextField(help_text=_("Prompts, settings, decoding parameters"))
    observed = models.TextField()
    expected = models.TextField()
    severity = models.CharField(max_length=10, choices=Severity.choices, help_text=_("As the reporter sees it"))
    other_models = models.CharField(max_length=10, choices=OtherModels.choices, default=OtherModels.UNKNOWN)
    other_models_detail = models.TextField(blank=True)
    # Credit: a name, or anonymous to the public (reviewers always see the reporter).
    credit_name = models.CharField(max_length=200, blank=True)
    anonymous = models.BooleanField(default=False)
    terms = models.ForeignKey(DisclosureTerms, on_delete=models.PROTECT, related_name="+")
    terms_accepted_at = models.DateTimeField()
    terms_accepted_ip = models.GenericIPAddressField(null=True, blank=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    triage_severity = models.CharField(
        max_length=10, choices=Severity.choices, blank=True, help_text=_("As the triaging reviewer sees it")
    )
    duplicate_of = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="duplicates")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    triaged_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="duplicate") | Q(duplicate_of__isnull=False), name="flaw_duplicate_names_original"
            ),
            models.CheckConstraint(condition=~Q(duplicate_of=models.F("id")), name="flaw_not_own_duplicate"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="flaw_queue_idx"),
            models.Index(fields=["release", "status", "created_at"], name="flaw_release_queue_idx"),
        ]

    def __str__(self):
        return f"{self.release.repo_id}: {self.title} ({self.status})"

    @property
    def shown_severity(self) -> str:
        return self.triage_severity or self.severity


class FlawReportEntry(models.Model):
    """One line of a report's history as its reporter and the reviewers see it: a comment, or a change of state
    with the reviewer's note."""

    class Kind(models.TextChoices):
        COMMENT = "comment", _("Comment")
        CHANGE = "change", _("Change")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    report = models.ForeignKey(FlawReport, on_delete=models.CASCADE, related_name="entries")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    by_reviewer = models.BooleanField(default=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    body = models.TextField(blank=True)
    from_status = models.CharField(max_length=10, choices=FlawReport.Status.choices, blank=True)
    to_status = models.CharField(max_length=10, choices=FlawReport.Status.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.report_id} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"


class FlawReportAttachment(models.Model):
    """A file a reporter attached (PDF, PNG, JPEG), kept in storage and streamed by the portal to the reporter and
    reviewers only. Counts toward the uploader's bytes for the day like every upload."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    report = models.ForeignKey(FlawReport, on_delete=models.CASCADE, related_name="attachments")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=50)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=1000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.filename


class ProgressReport(models.Model):
    """What a holder did with a grant: filed any time, or carried by a renewal request (a release may require
    one to renew). For a lab grant the lab's owner or an admin reports for the lab."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="progress_reports")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    renewal = models.OneToOneField(
        AccessRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="progress_report"
    )
    summary = models.TextField(help_text=_("What was done with the weights"))
    publications = models.JSONField(default=list, blank=True, help_text=_("DOIs, e.g. 10.1234/abc"))
    derived_models = models.TextField(blank=True)
    incidents = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Progress report on {self.grant_id} ({self.created_at:%Y-%m-%d})"


class CloseOut(models.Model):
    """A certification, asked when access ends, that the copies of the weights were deleted. A personal grant's
    holder certifies their own; on a lab grant each member who held a seat certifies theirs and the owner the
    lab's (scope `lab`)."""

    class Scope(models.TextChoices):
        PERSONAL = "personal", _("Own copies")
        LAB = "lab", _("The lab's copies")

    class Reason(models.TextChoices):
        EXPIRED = "expired", _("Access expired")
        REVOKED = "revoked", _("Access revoked")
        CLOSED = "closed", _("Access closed by the holder")
        LEFT_LAB = "left_lab", _("Left the lab")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="closeouts")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="closeouts")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.PERSONAL)
    reason = models.CharField(max_length=10, choices=Reason.choices)
    asked_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    deleted_on = models.DateField(null=True, blank=True)
    locations = models.PositiveIntegerField(null=True, blank=True, help_text=_("How many places held copies"))
    statement = models.TextField(blank=True)
    reminded_7_at = models.DateTimeField(null=True, blank=True)
    reminded_30_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["asked_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["grant", "user", "scope"], name="closeout_one_per_person_scope"),
            models.CheckConstraint(
                condition=Q(completed_at__isnull=True) | Q(deleted_on__isnull=False, locations__isnull=False),
                name="closeout_completed_has_facts",
            ),
        ]
        indexes = [
            models.Index(fields=["asked_at"], condition=Q(completed_at__isnull=True), name="closeout_outstanding_idx")
        ]

    def __str__(self):
        return f"Close-out of {self.grant_id} by {self.user_id} ({self.scope})"

    @property
    def is_outstanding(self) -> bool:
        return self.completed_at is None


class ReleaseDocument(TimeStamped):
    """A document published beside a release (its model card, acceptable use policy, the EU AI Act's public
    summary of training content, information for downstream providers, a training logbook, ...). Its text lives in
    numbered versions; the newest published one is current. The license is not one of them: it has its own page."""

    class Kind(models.TextChoices):
        MODEL_CARD = "model_card", _("Model card")
        ACCEPTABLE_USE = "acceptable_use", _("Acceptable use policy")
        TRAINING_CONTENT = "training_content", _("Public summary of training content")
        DOWNSTREAM = "downstream", _("Information for downstream providers")
        COPYRIGHT = "copyright", _("Copyright policy")
        LOGBOOK = "logbook", _("Training logbook")
        EVALUATION = "evaluation", _("Evaluation report")
        OTHER = "other", _("Other")

    class Visibility(models.TextChoices):
        PUBLIC = "public", _("Public")
        HOLDERS = "holders", _("Holders only")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    release = models.ForeignKey(ModelRelease, on_delete=models.CASCADE, related_name="documents")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    title = models.CharField(max_length=200)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    # Holders must acknowledge the current version before the gate lets them download the weights.
    acknowledge_required = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")

    class Meta:
        ordering = ["release", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["release", "title"], name="document_release_title_unique"),
        ]

    def __str__(self):
        return f"{self.release.repo_id}: {self.title}"

    @property
    def holders_only(self) -> bool:
        return self.visibility == self.Visibility.HOLDERS


class DocumentVersion(models.Model):
    """One version of a document: its text (Markdown), the SHA-256 of that text's UTF-8 bytes, and the release
    revisions it describes. A version is never edited: a change is a new version."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    document = models.ForeignKey(ReleaseDocument, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    body = models.TextField()
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    notes = models.CharField(max_length=500, blank=True, help_text=_("What changed since the previous version"))
    revisions = models.ManyToManyField(ReleaseRevision, blank=True, related_name="document_versions")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")

    class Meta:
        ordering = ["document", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="document_version_number_unique"),
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="document_version_sha256_hex"),
        ]
        triggers = [pgtrigger.Protect(name="document_version_immutable", operation=pgtrigger.Update)]

    def __str__(self):
        return f"{self.document} v{self.number}"


class DocumentAcknowledgement(models.Model):
    """A person acknowledged one version of a document (a new version asks again)."""

    version = models.ForeignKey(DocumentVersion, on_delete=models.PROTECT, related_name="acknowledgements")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "user"], name="document_ack_unique")]

    def __str__(self):
        return f"{self.user_id} acknowledged {self.version_id}"


class SigningOfficial(TimeStamped):
    """A person portal staff appointed to vouch for an institution's researchers: they see the researchers with
    a verified affiliation there and issue them library cards (access.services.cards). An appointment that ends
    is kept (ended_at) for the record; one current appointment per person and institution."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="officials")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="official_roles")
    appointed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )

    class Meta:
        ordering = ["institution", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "user"], condition=Q(ended_at__isnull=True), name="official_one_current"
            )
        ]

    def __str__(self):
        return f"{self.user} ({self.institution})"


class LibraryCardQuerySet(models.QuerySet):
    def valid(self, now=None):
        """The one definition of a valid card: not revoked, not expired."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())


class LibraryCard(TimeStamped):
    """An institution's signing official vouches for one of its researchers for a while (LIBRARY_CARD_DAYS): a
    fact the decision rules read ("valid library card"). Bound to the researcher's account and to the provider
    identity (issuer + subject) their affiliation was verified through; for every gated release or chosen ones.
    Grants approved on a card last while it does (the gate refuses `card_revoked` / `card_expired`)."""

    class Ending(models.TextChoices):
        REVOKED = "revoked", _("Revoked by a signing official")
        LEFT = "left", _("The institution no longer asserts the affiliation")
        UNLINKED = "unlinked", _("The identity it was bound to was unlinked")

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="library_cards")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="library_cards")
    issuer = models.CharField(max_length=500, editable=False)
    subject = models.CharField(max_length=255, editable=False)
    affiliation = models.CharField(max_length=300, blank=True, editable=False)
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    all_releases = models.BooleanField(default=True)
    releases = models.ManyToManyField(ModelRelease, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    ending = models.CharField(max_length=10, choices=Ending.choices, blank=True)

    objects = LibraryCardQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at", "-id"]
        indexes = [models.Index(fields=["user", "expires_at"], name="card_lookup_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("issued_at")), name="card_expires_after_issue")
        ]

    def __str__(self):
        return f"{self.user} ({self.institution})"

    @property
    def is_valid(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    def covers(self, release) -> bool:
        return self.all_releases or any(r.pk == release.pk for r in self.releases.all())


class AdvisoryNumber(models.Model):
    """The last advisory number given in a year: `ADV-YYYY-NNNN` counts per year, and one UPSERT on this row
    (access.services.advisories) gives each publication its own number however many publish at once."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.year}: {self.last}"


class Advisory(TimeStamped):
    """What a release's managers tell the holders of affected revisions about a flaw: drafted, then published
    (numbered then), then updated with dated notes. Its states move only through access.services.advisories."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PUBLISHED = "published", _("Published")

    Severity = FlawReport.Severity

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    release = models.ForeignKey(ModelRelease, on_delete=models.PROTECT, related_name="advisories")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    year = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    number = models.PositiveIntegerField(null=True, blank=True, editable=False)
    identifier = models.CharField(max_length=20, blank=True, editable=False, help_text=_("ADV-YYYY-NNNN"))
    affected_revisions = models.ManyToManyField(ReleaseRevision, related_name="advisories")
    reports = models.ManyToManyField(FlawReport, blank=True, related_name="advisories")
    severity = models.CharField(max_length=10, choices=FlawReport.Severity.choices)
    title = models.CharField(max_length=200)
    summary = models.TextField()
    mitigation = models.TextField(blank=True)
    fixed_revision = models.ForeignKey(
        ReleaseRevision, on_delete=models.PROTECT, null=True, blank=True, related_name="fixes"
    )
    credit = models.CharField(max_length=200, blank=True)
    embargo_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-published_at", "-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["year", "number"], condition=Q(number__isnull=False), name="advisory_year_number_unique"
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False, published_at__isnull=False),
                name="advisory_published_numbered",
            ),
        ]

    def __str__(self):
        return self.identifier or f"{self.release.repo_id}: {self.title} (draft)"

    @property
    def published(self) -> bool:
        return self.status == self.Status.PUBLISHED

    def public(self, now=None) -> bool:
        """Published and past its embargo: anyone may see it."""
        now = now or timezone.now()
        return self.published and (self.embargo_until is None or self.embargo_until <= now)


class AdvisoryUpdate(models.Model):
    """A dated note added to a published advisory (published advisories are otherwise not edited)."""

    advisory = models.ForeignKey(Advisory, on_delete=models.CASCADE, related_name="updates")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.advisory} update {self.created_at:%Y-%m-%d}"


class AdvisoryRecipient(models.Model):
    """An account told of an advisory because it downloaded an affected revision (its own `DownloadEvent`),
    fixed when the advisory is published; it acknowledges once and is reminded until it does."""

    advisory = models.ForeignKey(Advisory, on_delete=models.CASCADE, related_name="recipients")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="advisories_told")
    created_at = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["advisory", "user"], name="advisory_recipient_unique")]

    def __str__(self):
        return f"{self.advisory} → {self.user_id}"


class RevisionWithdrawal(models.Model):
    """A published revision withdrawn (recorded beside it: the revision itself stays immutable). The gate refuses
    it on every channel with `revision_withdrawn`, naming the fixed revision."""

    revision = models.OneToOneField(ReleaseRevision, on_delete=models.PROTECT, related_name="withdrawal")
    advisory = models.ForeignKey(Advisory, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    use_instead = models.ForeignKey(ReleaseRevision, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    withdrawn_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.revision} withdrawn"
