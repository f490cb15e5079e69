"""The download gate's rule, in memory: every combination of a release's and a person's states against an oracle
written from the access rules (docs/security.md, "The download gate"), not from the code. No database, no cache,
no clock."""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from access.gate import rule
from access.gate.facts import (
    DocumentFacts,
    GateInputs,
    GrantFacts,
    LabAccess,
    LabFacts,
    ReleaseFacts,
    RequestFacts,
    SeatFacts,
    ViewerFacts,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
CURRENT, OLD = 2, 1  # license ids
ME, SOMEONE = 10, 11
RELEASE, OTHER_RELEASE = 100, 101
ROOT = Path(__file__).resolve().parent.parent


def test_the_rule_imports_nothing_but_the_standard_library():
    """Pure: importing the rule (and its facts) loads no Django, no database driver, no Redis."""
    code = (
        "import sys; import access.gate.rule; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'psycopg', 'redis', 'celery', 'rest_framework')); "
        "extra = sorted(m for m in sys.modules if m.startswith('access') and m not in "
        "('access', 'access.gate', 'access.gate.rule', 'access.gate.facts')); "
        "print(bad, extra); sys.exit(1 if bad or extra else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={})
    assert done.returncode == 0, done.stdout + done.stderr


# --- The states ---------------------------------------------------------------------------------------------

LAB = LabFacts(pk=7, public_id="l" * 32, name="Language Lab")


def grant(
    pk,
    *,
    user=ME,
    release=RELEASE,
    license=CURRENT,
    issued=-100,
    expires=265,
    revoked=None,
    lab=None,
    country="",
    reverify_by=None,
    suspended=False,
    card=None,
):
    """`card`: None (the grant rested on no library card), "valid", "revoked" or "expired"."""
    return GrantFacts(
        pk=pk,
        public_id=f"{pk:032x}",
        user_id=user,
        release_id=release,
        request_id=pk + 1000,
        issued_at=NOW + issued * DAY,
        expires_at=NOW + expires * DAY,
        revoked_at=None if revoked is None else NOW + revoked * DAY,
        revoke_reason="Shared the weights." if revoked is not None else "",
        license_id=license,
        lab=lab,
        country=country,
        reverify_by=None if reverify_by is None else NOW + reverify_by * DAY,
        suspended=suspended,
        affiliation="faculty@uni.example" if reverify_by is not None else "",
        card_id=None if card is None else 70,
        card_expires_at=None if card is None else NOW + (-2 if card == "expired" else 200) * DAY,
        card_revoked=card == "revoked",
    )


def request(pk, status, *, created, license=CURRENT, reconsent_of=None, decided=None):
    return RequestFacts(
        pk=pk,
        public_id=f"{pk:032x}",
        release_id=RELEASE,
        status=status,
        created_at=NOW + created * DAY,
        decided_at=None if decided is None else NOW + decided * DAY,
        decision_reason="Not now." if status == "rejected" else "",
        license_id=license,
        reconsent_of_id=reconsent_of,
    )


# What the person holds of their own: the grants and the requests that come with them.
OWN = {
    "none": ((), ()),
    "active": ((grant(1),), (request(1001, "approved", created=-101),)),
    "old_license": ((grant(1, license=OLD),), (request(1001, "approved", created=-101, license=OLD),)),
    "old_license_in_review": (
        (grant(1, license=OLD),),
        (request(5, "pending", created=-1, reconsent_of=1), request(1001, "approved", created=-101, license=OLD)),
    ),
    "old_and_current": (
        (grant(2), grant(1, license=OLD, issued=-200, expires=20)),
        (request(1002, "approved", created=-101), request(1001, "approved", created=-201, license=OLD)),
    ),
    "revoked": ((grant(1, revoked=-5),), (request(1001, "approved", created=-101),)),
    "expired": ((grant(1, issued=-400, expires=-35),), (request(1001, "approved", created=-401),)),
    # The release restricts the country the grant's request declared (RESTRICTED).
    "restricted_country": ((grant(1, country="XR"),), (request(1001, "approved", created=-101),)),
    "allowed_country": ((grant(1, country="FR"),), (request(1001, "approved", created=-101),)),
    # A grant resting on a verified affiliation: seen in time, too long ago, or suspended by a sign-in.
    "affiliation_seen": ((grant(1, reverify_by=30),), (request(1001, "approved", created=-101),)),
    "affiliation_stale": ((grant(1, reverify_by=-1),), (request(1001, "approved", created=-101),)),
    "affiliation_suspended": ((grant(1, reverify_by=30, suspended=True),), (request(1001, "approved", created=-101),)),
    # Both, and an old license: the restricted country wins, then re-verification.
    "restricted_and_stale": (
        (grant(1, country="XR", reverify_by=-1, license=OLD),),
        (request(1001, "approved", created=-101, license=OLD),),
    ),
    "stale_old_license": (
        (grant(1, reverify_by=-1, license=OLD),),
        (request(1001, "approved", created=-101, license=OLD),),
    ),
    # A grant resting on a library card: valid, revoked by an official, or expired (before the grant would).
    "card_valid": ((grant(1, card="valid"),), (request(1001, "approved", created=-101),)),
    "card_revoked": ((grant(1, card="revoked"),), (request(1001, "approved", created=-101),)),
    "card_expired": ((grant(1, card="expired"),), (request(1001, "approved", created=-101),)),
    # A revoked card and a stale affiliation: the card wins; a restricted country wins over the card; an expired
    # card outranks an old license.
    "card_revoked_and_stale": (
        (grant(1, card="revoked", reverify_by=-1),),
        (request(1001, "approved", created=-101),),
    ),
    "restricted_and_card_revoked": (
        (grant(1, country="XR", card="revoked"),),
        (request(1001, "approved", created=-101),),
    ),
    "card_expired_old_license": (
        (grant(1, card="expired", license=OLD),),
        (request(1001, "approved", created=-101, license=OLD),),
    ),
}
RESTRICTED = frozenset({"XR"})
# A lab grant through a lab the person belongs to, and their seat on it.
SEAT_STATUS = {
    "license_pending": ("license_pending", None),
    "active": ("active", CURRENT),
    "active_old": ("active", OLD),
    "requested": ("requested", CURRENT),
    "rejected": ("rejected", CURRENT),
    "ended": ("ended", CURRENT),
}
LABS = ["none", "no_seat", *SEAT_STATUS, "grant_revoked", "grant_expired"]
# The person's later requests (besides those that came with their grants).
HISTORY = ["none", "pending", "needs_info", "rejected_after", "rejected_before", "withdrawn", "draft"]
NAMED = ["none", "own", "lab", "foreign_lab", "someone_elses", "other_release"]
VIEWERS = ["anonymous", "active", "inactive", "reviewer"]
# Documents the release asks holders to acknowledge before downloading: none; one, acknowledged at its current
# version; two, of which one was acknowledged at an older version only (a new version asks again).
LOGBOOK = DocumentFacts(pk=80, public_id="d" * 32, title="Training logbook", version_pk=81, version=1)
DOWNSTREAM = DocumentFacts(pk=82, public_id="e" * 32, title="For downstream providers", version_pk=84, version=2)
DOCUMENTS = {
    "none": ((), frozenset()),
    "acknowledged": ((LOGBOOK,), frozenset({81})),
    "new_version": ((LOGBOOK, DOWNSTREAM), frozenset({81, 83})),
}


def lab_access(state: str) -> tuple[LabAccess, ...]:
    if state == "none":
        return ()
    kwargs = (
        {"revoked": -3}
        if state == "grant_revoked"
        else {"issued": -400, "expires": -10}
        if state == "grant_expired"
        else {}
    )
    lab_grant = grant(50, user=SOMEONE, lab=LAB, **kwargs)
    if state in ("no_seat",):
        return (LabAccess(lab_grant, None),)
    status, license = SEAT_STATUS.get(state, ("active", CURRENT))
    return (LabAccess(lab_grant, SeatFacts(pk=60, status=status, license_id=license, decision_reason="Not named.")),)


def history(state: str) -> tuple[RequestFacts, ...]:
    return {
        "none": (),
        "pending": (request(20, "pending", created=-2),),
        "needs_info": (request(20, "needs_info", created=-2),),
        "rejected_after": (request(20, "rejected", created=-2, decided=-1),),
        "rejected_before": (request(20, "rejected", created=-500, decided=-499),),
        "withdrawn": (request(20, "withdrawn", created=-2),),
        "draft": (request(20, "draft", created=-2),),
    }[state]


# The revision a call asks for: main, an older one still served, or a withdrawn one (with the revision to use).
REVISIONS = ("main", "older", "withdrawn")
MAIN_REVISION, OLDER_REVISION, WITHDRAWN_REVISION = 300, 301, 302
FIXED_SHA = "b" * 40


def build(
    published, gated, review_mode, viewer, own, lab, past, named, documents="none", revision="main"
) -> GateInputs | None:
    grants, own_requests = OWN[own]
    labs = lab_access(lab)
    requests = tuple(sorted(own_requests + history(past), key=lambda r: r.created_at, reverse=True))
    named_grant, foreign = None, False
    if named == "own":
        if not grants:
            return None
        named_grant = grants[0]
    elif named == "lab":
        if not labs:
            return None
        named_grant = labs[0].grant
    elif named == "foreign_lab":
        named_grant, foreign, labs = grant(51, user=SOMEONE, lab=LAB), True, ()
    elif named == "someone_elses":
        named_grant = grant(52, user=SOMEONE)
    elif named == "other_release":
        named_grant = grant(53, release=OTHER_RELEASE)
    if named in ("lab", "foreign_lab"):
        grants, requests = (), ()  # a named lab grant is all that counts: its page reads nothing else
    if named in ("own", "someone_elses", "other_release"):
        labs = ()
    return GateInputs(
        release=ReleaseFacts(
            pk=RELEASE,
            repo_id="facebook/opt-175b",
            published=published,
            gated=gated,
            license_id=CURRENT if gated else None,
            license_version="2.0",
            reviews_license_updates=review_mode,
            restricted_countries=RESTRICTED,
            withdrawn=((WITHDRAWN_REVISION, FIXED_SHA),),
        ),
        revision_id={"main": MAIN_REVISION, "older": OLDER_REVISION, "withdrawn": WITHDRAWN_REVISION}[revision],
        viewer=None
        if viewer == "anonymous"
        else ViewerFacts(pk=ME, active=viewer != "inactive", sees_unpublished=viewer == "reviewer" and not published),
        grants=grants,
        labs=labs,
        requests=requests,
        named_grant=named_grant,
        named_grant_foreign=foreign,
        documents=DOCUMENTS[documents][0],
        acknowledged=DOCUMENTS[documents][1],
    )


# --- The oracle -----------------------------------------------------------------------------------------------

LAB_REFUSAL = {
    "no_seat": "lab_license_pending",
    "license_pending": "lab_license_pending",
    "active_old": "lab_license_pending",
    "ended": "lab_license_pending",
    "requested": "lab_seat_pending",
    "rejected": "lab_seat_rejected",
}


def oracle(
    published, gated, review_mode, viewer, own, lab, past, named, documents="none", revision="main"
) -> tuple[str, int | None, bool]:
    """The rules below, then: whoever they allow on a gated release who has not acknowledged the current version
    of every document the release asks to be acknowledged is refused with acknowledge_documents, about the same
    grant, until they do."""
    code, grant_pk, waiting = _oracle(published, gated, review_mode, viewer, own, lab, past, named, revision)
    if code == "granted" and documents == "new_version":
        return "acknowledge_documents", grant_pk, False
    return code, grant_pk, waiting


def _oracle(
    published, gated, review_mode, viewer, own, lab, past, named, revision="main"
) -> tuple[str, int | None, bool]:
    """(code, the pk of the grant it names or allows through, awaiting review), from the rules:

    - an unpublished release exists only for reviewers; a withdrawn revision of one that exists is for nobody,
      whatever they hold; an open one is for anyone;
    - a gated one needs a signed-in, active account, and then either the person's own grant, active, from a
      country the release does not restrict, with the verified affiliation it rested on (if any) seen within its
      maximum age and not suspended, and accepted on the current license version, or an active seat, accepted
      on the current version, on an active lab grant; their own grant counts first;
    - a named grant (its page, its batch) is the only one that counts, and only the person's own or their lab's;
    - a grant that rested on a library card also needs the card neither revoked nor expired;
    - otherwise a refusal says what the person holds now that stands in the way (a restricted country; a library
      card revoked, then expired; an affiliation to verify again; a license to accept again, possibly waiting
      for a reviewer; a place on the lab's grant to accept, to wait for, or refused), else what their past says
      (a request under review; whichever is newer of an ended grant and a rejection; an ended
      lab grant), else that they may apply."""
    if not published and viewer != "reviewer":
        return "not_found", None, False
    if revision == "withdrawn":
        return "revision_withdrawn", None, False
    if not gated:
        return "open", None, False
    if viewer == "anonymous":
        return "not_authenticated", None, False
    if viewer == "inactive":
        return "account_inactive", None, False
    grants, _ = OWN[own]
    waiting = own == "old_license_in_review" and review_mode
    if named in ("foreign_lab", "someone_elses", "other_release"):
        return "not_found", None, False
    held_refusal = {
        "restricted_country": "country_restricted",
        "restricted_and_stale": "country_restricted",
        "affiliation_stale": "reverify",
        "affiliation_suspended": "reverify",
        "stale_old_license": "reverify",
        "card_revoked": "card_revoked",
        "card_expired": "card_expired",
        "card_revoked_and_stale": "card_revoked",
        "restricted_and_card_revoked": "country_restricted",
        "card_expired_old_license": "card_expired",
    }.get(own)
    if named == "own":
        g = grants[0]
        if own in ("revoked", "expired"):
            return own, g.pk, False
        if held_refusal:
            return held_refusal, g.pk, False
        return ("granted", g.pk, False) if g.license_id == CURRENT else ("license_update", g.pk, waiting)
    lab_grant_active = lab not in ("none", "grant_revoked", "grant_expired")
    if named == "lab":
        if lab in ("grant_revoked", "grant_expired"):
            return lab.removeprefix("grant_"), 50, False
        return ("granted", 50, False) if lab == "active" else (LAB_REFUSAL[lab], 50, False)
    if own in ("active", "old_and_current", "allowed_country", "affiliation_seen", "card_valid"):
        return "granted", grants[0].pk, False
    if lab == "active":
        return "granted", 50, False
    if held_refusal:
        return held_refusal, 1, False
    if own in ("old_license", "old_license_in_review"):
        return "license_update", 1, waiting
    if lab_grant_active:
        return LAB_REFUSAL[lab], 50, False
    if past in ("pending", "needs_info"):
        return "pending", None, False
    later_request = past in ("rejected_after", "withdrawn", "draft")  # filed after the grant was issued
    if own in ("revoked", "expired") and not later_request:
        return own, 1, False
    if past == "rejected_after" or (past == "rejected_before" and own == "none"):
        return "rejected", None, False
    if lab in ("grant_revoked", "grant_expired"):
        return lab.removeprefix("grant_"), 50, False
    return "gated", None, False


# Documents and the revision asked for: "none" (no documents) decides as "acknowledged" does, and every other test
# builds with it. Every state meets main with its documents acknowledged; the other pairs (a document to
# acknowledge, an older revision, a withdrawn one) act after or before everything a grant holds, so they meet the
# grant states that differ in kind (none, allowed, a license to accept, ended) rather than every one of them.
EXTRA = [("acknowledged", "main")]
OTHER_EXTRA = [("new_version", "main"), ("acknowledged", "older"), ("new_version", "withdrawn")]
CORE_OWN = ["none", "active", "old_license", "revoked"]
AXES = ([True, False], [True, False], [True, False], VIEWERS, list(OWN), LABS, HISTORY, NAMED, EXTRA)
OTHER_AXES = ([True, False], [True, False], [True, False], VIEWERS, CORE_OWN, LABS, HISTORY, NAMED, OTHER_EXTRA)


# One item per kind of viewer, so the two pytest-xdist workers share the combinations (about 250,000 in all).
@pytest.mark.parametrize("viewer", VIEWERS)
def test_every_combination_meets_the_oracle(viewer):
    checked = mismatches = 0
    report = []
    axes = [(*AXES[:3], [viewer], *AXES[4:]), (*OTHER_AXES[:3], [viewer], *OTHER_AXES[4:])]
    for *state, (documents, revision) in itertools.chain(*(itertools.product(*a) for a in axes)):
        state = (*state, documents, revision)
        inputs = build(*state)
        if inputs is None:
            continue
        decision = rule.decide(inputs, NOW)
        code, grant_pk, waiting = oracle(*state)
        got = (decision.code, decision.grant.pk if decision.grant else None, decision.awaiting_review)
        if code in ("pending", "rejected", "gated", "not_found", "open", "not_authenticated", "account_inactive",
                    "revision_withdrawn"):  # fmt: skip
            got = (got[0], grant_pk, got[2])  # these name no grant the oracle follows
        checked += 1
        if got != (code, grant_pk, waiting):
            mismatches += 1
            if len(report) < 20:
                report.append(f"{state}: expected {(code, grant_pk, waiting)}, got {got}")
    assert checked > 40_000
    assert not mismatches, f"{mismatches} of {checked}:\n" + "\n".join(report)


def test_an_allowed_decision_names_the_grant_it_rests_on_and_a_refusal_of_the_past_names_the_request():
    allowed = rule.decide(build(True, True, False, "active", "active", "active", "none", "none"), NOW)
    assert allowed.allowed and allowed.grant.pk == 1 and allowed.grant.lab is None  # own grant first
    through_lab = rule.decide(build(True, True, False, "active", "none", "active", "none", "none"), NOW)
    assert through_lab.allowed and through_lab.grant.lab == LAB and through_lab.seat.pk == 60
    pending = rule.decide(build(True, True, False, "active", "none", "none", "needs_info", "none"), NOW)
    assert pending.code == "pending" and pending.request.status == "needs_info"
    rejected = rule.decide(build(True, True, False, "active", "none", "none", "rejected_after", "none"), NOW)
    assert rejected.code == "rejected" and rejected.request.decision_reason == "Not now."


def test_time_is_the_callers_a_grant_expires_at_its_instant():
    inputs = build(True, True, False, "active", "active", "none", "none", "none")
    expires = inputs.grants[0].expires_at
    assert rule.decide(inputs, expires - timedelta(microseconds=1)).allowed
    assert rule.decide(inputs, expires).code == "expired"


# --- The order in which refusals win --------------------------------------------------------------------------


def test_the_order_of_refusals_is_written_once_and_covers_every_code():
    codes = {v for k, v in vars(rule).items() if k.isupper() and isinstance(v, str) and k not in ("OPEN", "GRANTED")}
    assert set(rule.ORDER) == codes
    assert len(rule.ORDER) == len(set(rule.ORDER))
    # What holds for everyone comes first, then the account, then what the person holds now, then the past.
    positions = [rule.RANK[c] for c in ("not_found", "revision_withdrawn", "not_authenticated", "account_inactive")]
    assert positions == sorted(positions)
    held = ["country_restricted", "card_revoked", "card_expired", "reverify", "license_update"]
    assert [rule.RANK[c] for c in held] == sorted(rule.RANK[c] for c in held)
    assert max(rule.RANK[c] for c in held) < rule.RANK["acknowledge_documents"] < rule.RANK["pending"]
    assert rule.ORDER[-1] == "gated"


@pytest.mark.parametrize(
    ("one", "other", "winner"),
    [
        # An old license on the person's own grant outranks any wait for a place on a lab grant.
        (("old_license", "requested"), None, "license_update"),
        (("old_license", "rejected"), None, "license_update"),
        (("old_license", "no_seat"), None, "license_update"),
        # A disabled account outranks everything held.
        (("old_license", "requested"), "inactive", "account_inactive"),
    ],
)
def test_when_several_refusals_apply_the_order_decides(one, other, winner):
    own, lab = one
    inputs = build(True, True, False, other or "active", own, lab, "pending", "none")
    assert rule.decide(inputs, NOW).code == winner


def test_among_held_refusals_the_earliest_in_the_order_wins():
    lab_grants = tuple(
        LabAccess(
            replace(grant(50 + i, user=SOMEONE, lab=LAB), pk=50 + i),
            SeatFacts(pk=60 + i, status=status, license_id=CURRENT, decision_reason=""),
        )
        for i, status in enumerate(["requested", "license_pending", "rejected"])
    )
    inputs = replace(build(True, True, False, "active", "none", "none", "none", "none"), labs=lab_grants)
    assert rule.decide(inputs, NOW).code == "lab_seat_rejected"
    assert rule.decide(replace(inputs, labs=lab_grants[:2]), NOW).code == "lab_license_pending"


def test_acknowledge_documents_names_the_documents_not_acknowledged_at_their_current_version():
    inputs = build(True, True, False, "active", "active", "none", "none", "none", "new_version")
    decision = rule.decide(inputs, NOW)
    assert decision.code == "acknowledge_documents" and decision.status == 403
    assert decision.documents == (DOWNSTREAM,) and decision.grant.pk == 1
    assert rule.decide(replace(inputs, acknowledged=frozenset({81, 84})), NOW).allowed


def test_documents_never_stand_in_front_of_anything_but_an_allowed_download():
    for own in ("old_license", "revoked", "none"):
        inputs = build(True, True, False, "active", own, "none", "none", "none", "new_version")
        assert rule.decide(inputs, NOW).code != "acknowledge_documents"
    assert rule.decide(
        build(True, False, False, "anonymous", "none", "none", "none", "none", "new_version"), NOW
    ).allowed


@pytest.mark.parametrize(
    ("code", "holders_only", "readable"),
    [
        ("open", True, True),
        ("granted", True, True),
        ("acknowledge_documents", True, True),
        ("gated", True, False),
        ("not_authenticated", True, False),
        ("pending", True, False),
        ("license_update", True, False),
        ("gated", False, True),
        ("not_authenticated", False, True),
        ("not_found", False, False),
    ],
)
def test_who_reads_a_document(code, holders_only, readable):
    decision = rule.AccessDecision(code)
    assert rule.may_read_document(decision, holders_only=holders_only) is readable


def test_a_withdrawn_revision_names_the_revision_to_use_and_wins_over_everything_but_a_missing_release():
    for viewer in ("anonymous", "inactive", "active", "reviewer"):
        decision = rule.decide(
            build(True, True, False, viewer, "active", "active", "none", "none", revision="withdrawn"), NOW
        )
        assert (decision.code, decision.use_instead, decision.status) == ("revision_withdrawn", FIXED_SHA, 403)
    hidden = rule.decide(
        build(False, True, False, "active", "active", "none", "none", "none", revision="withdrawn"), NOW
    )
    assert hidden.code == "not_found"
    assert rule.decide(
        build(True, False, False, "anonymous", "none", "none", "none", "none", revision="withdrawn"), NOW
    ).code == ("revision_withdrawn")
    assert rule.decide(
        build(True, True, False, "active", "active", "none", "none", "none", revision="older"), NOW
    ).allowed
