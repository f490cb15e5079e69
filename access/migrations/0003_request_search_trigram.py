"""Trigram indexes for the reviewer queue's search (name, email, affiliation) on PostgreSQL.

`icontains` compiles to UPPER("col"::text) LIKE UPPER(%s), so each index is on exactly that expression. On
SQLite (development) nothing is created: its queue is small.
"""

from django.db import migrations

COLUMNS = ("full_name", "email", "affiliation")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS request_{column}_trgm ON access_accessrequest "
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS request_{column}_trgm")


class Migration(migrations.Migration):
    dependencies = [("access", "0002_reason_templates")]
    operations = [migrations.RunPython(create, drop)]
