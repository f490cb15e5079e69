from django.db import migrations

TEMPLATES = [
    (
        "approve",
        "Research use confirmed",
        "Thank you: your research plan fits the license. Please cite the model's paper.",
    ),
    (
        "reject",
        "Commercial use",
        "The license allows non-commercial research only, and the use you describe is commercial.",
    ),
    ("reject", "Use not described", "The request does not describe the research the model would be used for."),
    (
        "request_info",
        "Affiliation unclear",
        "Please tell us which institution or lab you work with, and your role there.",
    ),
    ("request_info", "Research plan", "Please describe in more detail what you will study with the model, and how."),
    ("revoke", "License breach", "The license terms were breached (for example, the weights were shared)."),
]


def add(apps, schema_editor):
    ReasonTemplate = apps.get_model("access", "ReasonTemplate")
    for kind, title, text in TEMPLATES:
        ReasonTemplate.objects.get_or_create(kind=kind, title=title, defaults={"text": text})


def remove(apps, schema_editor):
    ReasonTemplate = apps.get_model("access", "ReasonTemplate")
    for kind, title, _ in TEMPLATES:
        ReasonTemplate.objects.filter(kind=kind, title=title).delete()


class Migration(migrations.Migration):
    dependencies = [("access", "0001_initial")]
    operations = [migrations.RunPython(add, remove)]
