"""Today's automatic approval becomes a decision rule: a release that approved verified addresses on its
allow-listed email domains gets one rule, "approve: verified email domain is one of these", and the approval
mode goes. Grants record the country their request declared (what the gate compares with the release's
restricted countries)."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def forwards(apps, schema_editor):
    ModelRelease = apps.get_model("access", "ModelRelease")
    DecisionRule = apps.get_model("access", "DecisionRule")
    Grant = apps.get_model("access", "Grant")
    AccessRequest = apps.get_model("access", "AccessRequest")
    for release in ModelRelease.objects.filter(approval_mode="auto_domain"):
        domains = sorted(
            {d.strip().lower().lstrip("@") for d in release.auto_approve_domains.splitlines() if d.strip()}
        )
        if not domains:
            continue
        DecisionRule.objects.create(
            release=release,
            position=1,
            action="approve",
            conditions={"email_domains": domains},
            note="Approves verified addresses on the former allow-listed domains",
        )
    Grant.objects.filter(country="").update(
        country=Subquery(AccessRequest.objects.filter(pk=OuterRef("request_id")).values("country")[:1])
    )


def backwards(apps, schema_editor):
    ModelRelease = apps.get_model("access", "ModelRelease")
    DecisionRule = apps.get_model("access", "DecisionRule")
    for rule in DecisionRule.objects.filter(retired_at__isnull=True, action="approve").order_by("position"):
        domains = rule.conditions.get("email_domains") or []
        if set(rule.conditions) == {"email_domains"} and domains:
            ModelRelease.objects.filter(pk=rule.release_id, approval_mode="manual").update(
                approval_mode="auto_domain", auto_approve_domains="\n".join(domains)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0019_decision_rules"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(model_name="modelrelease", name="approval_mode"),
        migrations.RemoveField(model_name="modelrelease", name="auto_approve_domains"),
    ]
