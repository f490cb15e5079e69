"""A release's decision rules and restricted countries, set by release managers (access.rules evaluates them).

`release_rules_set` replaces the ordered list in one audited change, from any entry point (page, API, admin).
A rule whose action, conditions and note are unchanged keeps its id (and moves if its place changed); any other
change retires the old rule and makes a new one, so an automatic decision always names the rule as it was."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_countries import countries as COUNTRIES

from .. import rules as rules_logic
from ..audit import audit
from ..models import DecisionRule, ModelRelease
from ..selectors import is_release_manager
from .base import Actor, ServiceError, clean, require_role

A = DecisionRule.Action


def _countries(values) -> list[str]:
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    if not isinstance(values, list | tuple) or len(values) > 250:
        raise ServiceError(_("Give at most 250 country codes."), "invalid", field="restricted_countries")
    known = dict(COUNTRIES)
    out = set()
    for raw in values:
        code = str(raw).strip().upper()
        if code not in known:
            raise ServiceError(
                _("%(code)s is not an ISO 3166 country code.") % {"code": code[:10]},
                "invalid",
                field="restricted_countries",
            )
        out.add(code)
    return sorted(out)


def _clean_rules(rules, restricted: list[str]) -> list[dict]:
    if not isinstance(rules, list | tuple) or len(rules) > rules_logic.MAX_RULES:
        raise ServiceError(_("Give at most %(n)d rules.") % {"n": rules_logic.MAX_RULES}, "invalid", field="rules")
    cleaned = []
    for i, raw in enumerate(rules, start=1):
        if not isinstance(raw, dict):
            raise ServiceError(_("Each rule is an object."), "invalid", field="rules")
        action = raw.get("action")
        if action not in A.values:
            raise ServiceError(
                _("Rule %(n)d: the action is one of %(actions)s.") % {"n": i, "actions": ", ".join(A.values)},
                "invalid_rule",
                field="action",
            )
        try:
            conditions = rules_logic.clean_conditions(raw.get("conditions") or {}, action=action, restricted=restricted)
        except rules_logic.RuleError as exc:
            raise ServiceError(
                _("Rule %(n)d: %(problem)s") % {"n": i, "problem": exc}, "invalid_rule", field=exc.field
            ) from None
        note = clean(str(raw.get("note") or ""), field="note", multiline=False, max_length=200)
        cleaned.append({"action": action, "conditions": conditions, "note": note})
    return cleaned


def rule_data(rule: DecisionRule) -> dict:
    return {
        "id": rule.pk,
        "position": rule.position,
        "action": rule.action,
        "conditions": rule.conditions,
        "note": rule.note,
    }


def release_rules_set(
    *, actor: Actor, release: ModelRelease, rules: list, restricted_countries=None
) -> list[DecisionRule]:
    """Replace the release's ordered rules (and, when given, its restricted countries), audited with before and
    after. Only release managers; a restricted country added refuses holders from it at the gate at once."""
    # A release manager, or an operator's command: never a task, nor a rule changing the rules.
    require_role(actor, holds=is_release_manager, refusal=_("Only release managers may do this."), trusted=("command",))
    with transaction.atomic():
        locked = ModelRelease.objects.select_for_update().get(pk=release.pk)
        restricted = locked.restricted_countries if restricted_countries is None else _countries(restricted_countries)
        wanted = _clean_rules(rules, restricted)
        current = rules_logic.current_rules(locked)
        before = [rule_data(r) for r in current]
        unclaimed = list(current)
        plan: list[tuple[dict, DecisionRule | None]] = []
        for item in wanted:
            same = next(
                (
                    r
                    for r in unclaimed
                    if (r.action, r.conditions, r.note) == (item["action"], item["conditions"], item["note"])
                ),
                None,
            )
            if same is not None:
                unclaimed.remove(same)
            plan.append((item, same))
        now = timezone.now()
        for rule in unclaimed:
            rule.retired_at = now
            rule.save(update_fields=["retired_at", "updated_at"])
        kept = [r for _item, r in plan if r is not None]
        for rule in kept:  # out of the way first: a place is held by one current rule at a time
            DecisionRule.objects.filter(pk=rule.pk).update(position=rule.position + 100_000)
        result = []
        for position, (item, rule) in enumerate(plan, start=1):
            if rule is None:
                rule = DecisionRule.objects.create(
                    release=locked, position=position, created_by=actor.user if actor.user else None, **item
                )
            else:
                rule.position = position
                rule.save(update_fields=["position", "updated_at"])
            result.append(rule)
        after = [rule_data(r) for r in result]
        changed_countries = restricted != locked.restricted_countries
        if changed_countries:
            audit_countries = {"from": locked.restricted_countries, "to": restricted}
            locked.restricted_countries = restricted
            locked.save(update_fields=["restricted_countries", "updated_at"])
        if before != after or changed_countries:
            audit(
                actor=actor,
                action="release.rules_changed",
                target=locked,
                data={
                    "before": before,
                    "after": after,
                    **({"restricted_countries": audit_countries} if changed_countries else {}),
                },
            )
    release.restricted_countries = restricted
    return result
