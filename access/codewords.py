"""Each person's codeword in a marked release: recorded the first time they are served (or when marking is turned
on for a release with holders), computed from MARKING_KEY every time after. Like the audit log, a small writer the
download path and the services share: it decides nothing (the gate has allowed the download already).

The codeword is `marking.marks_for(release, person, attempt)`; attempt 0 unless an earlier attempt's codeword is
held by someone else in the release (their fingerprints are unique in the release, so the database refuses a
duplicate). The record keeps the attempt and the fingerprint, never the codeword; so does the audit log.
"""

from __future__ import annotations

import math

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from . import marking
from .actors import Actor, rule_actor
from .audit import audit
from .models import MarkingCodeword, ModelFile, ModelRelease, User

# Release managers are warned once this share of a release's codewords is in use.
WARN_SHARE = 0.10


class CapacityExhausted(Exception):
    """Every codeword of the release is held: mark more files or more variants (a new revision)."""

    @staticmethod
    def detail() -> str:
        return _(
            "Every marked copy of this release is already held by someone; its release managers need to register "
            "a revision with more marked files or variants. Try again later."
        )


def marked_files(release: ModelRelease) -> list[tuple[str, int]]:
    """(path, variants) of the marked files of the release's main revision."""
    if not release.main_revision_id:
        return []
    return list(
        ModelFile.objects.filter(revision_id=release.main_revision_id, mark_variants__gt=0)
        .order_by("path")
        .values_list("path", "mark_variants")
    )


def capacity(release: ModelRelease) -> int:
    """How many distinct codewords the release's main revision can tell apart: V^N (the product of each marked
    file's variants); 0 when nothing is marked."""
    files = marked_files(release)
    return math.prod(v for _, v in files) if files else 0


def usage(release: ModelRelease) -> tuple[int, int]:
    """(codewords held, capacity)."""
    return MarkingCodeword.objects.filter(release=release).count(), capacity(release)


class MarkingStatus:
    """What the release's pages say about marking: files marked, variants, capacity (V^N), codewords in use."""

    def __init__(self, release: ModelRelease):
        self.files = marked_files(release)
        self.used = MarkingCodeword.objects.filter(release=release).count()
        self.capacity = math.prod(v for _, v in self.files) if self.files else 0
        variants = sorted({v for _, v in self.files})
        self.variants = variants[0] if len(variants) == 1 else None
        self.share = self.used / self.capacity if self.capacity else 0.0
        self.warn = self.capacity > 0 and self.share >= WARN_SHARE


def _fingerprint(release: ModelRelease, marks: marking.Marks, files: list[tuple[str, int]]) -> str:
    if not files:  # nothing marked yet: any two codewords differ
        return marking.fingerprint(release_id=release.pk, marks=marks, files=[(marks.seed.hex(), 2**62)])
    return marking.fingerprint(release_id=release.pk, marks=marks, files=files)


def codeword_assign(*, release: ModelRelease, user: User, actor: Actor | None = None) -> int:
    """The attempt number of the person's codeword in the release, recording a new one if they hold none.
    Idempotent. Raises CapacityExhausted when no codeword is free."""
    held = MarkingCodeword.objects.filter(release=release, user=user).values_list("attempt", flat=True).first()
    if held is not None:
        return held
    files = marked_files(release)
    size = math.prod(v for _, v in files) if files else 0
    used = MarkingCodeword.objects.filter(release=release).count()
    if size and used >= size:
        raise CapacityExhausted(release.repo_id)
    # Attempts draw codewords at random: with one of 16 left free, 4 × 16 draws miss it 1.6% of the time,
    # 16 × 16 draws 1 in 15 million (a large capacity rarely collides at all).
    for attempt in range(max(64, min(16 * size, 1_000_000))):
        marks = marking.marks_for(release_id=release.pk, user_id=user.pk, attempt=attempt)
        fingerprint = _fingerprint(release, marks, files)
        try:
            with transaction.atomic():
                MarkingCodeword.objects.create(release=release, user=user, attempt=attempt, fingerprint=fingerprint)
                audit(
                    actor=actor or rule_actor("marking"),
                    action="marking.codeword_assigned",
                    target=release,
                    data={"user": user.pk, "fingerprint": fingerprint, "capacity": size},
                )
                if size and used + 1 == max(1, math.ceil(size * WARN_SHARE)):
                    audit(
                        actor=rule_actor("marking"),
                        action="marking.capacity_warning",
                        target=release,
                        data={"used": used + 1, "capacity": size},
                    )
        except IntegrityError:
            held = MarkingCodeword.objects.filter(release=release, user=user).values_list("attempt", flat=True).first()
            if held is not None:
                return held  # assigned meanwhile by another request
            continue  # someone holds this codeword: the next attempt
        return attempt
    raise CapacityExhausted(release.repo_id)


def person_marks(*, release: ModelRelease, user: User, attempt: int | None) -> marking.Marks:
    """The person's codeword, recording it first when they hold none (`attempt` as the loader read it)."""
    if attempt is None:
        attempt = codeword_assign(release=release, user=user)
    return marking.marks_for(release_id=release.pk, user_id=user.pk, attempt=attempt)
