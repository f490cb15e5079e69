"""The test database, made quickly: how a transactional test empties it, and where a worker's copy comes from.

Emptying. A transactional test (``django_db(transaction=True)``, every live server) ends with Django's ``flush``,
which on PostgreSQL is one ``TRUNCATE`` of every table: about 0.7 s here, since each truncated table gets new
files. ``DELETE FROM`` each table inside one transaction with triggers and foreign-key checks off
(``session_replication_role = replica``; the tables are all emptied, so nothing is left dangling) does the same in
about 0.04 s. It needs a superuser (the suite's ``postgres``); for any other role, or when sequences are to be reset,
Django's own statement is used.

Creating. Migrating a new test database takes 10-20 s of one core. The first worker to need it migrates one as
usual and keeps a copy as a template, named by a digest of everything that shapes the schema (the migrations of
every installed app and the installed distributions); every later worker and run clones it (``CREATE DATABASE …
TEMPLATE``, under a PostgreSQL advisory lock) and lets Django's ``migrate`` confirm there is nothing to apply.
Templates of other digests with the same prefix are dropped when a new one is made.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

_SUPERUSER: dict[str, bool] = {}
_TEMPLATE: dict[str, str] = {}


def _is_superuser(connection) -> bool:
    alias = connection.alias
    if alias not in _SUPERUSER:
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            row = cursor.fetchone()
        _SUPERUSER[alias] = bool(row and row[0])
    return _SUPERUSER[alias]


def quick_flush() -> None:
    """Empty tables with DELETE instead of TRUNCATE when a test's flush asks for it (see the module's text)."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush
    if getattr(original, "quick", False):
        return

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if not tables or reset_sequences or not _is_superuser(self.connection):
            return original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return [
            "SET LOCAL session_replication_role = replica;",
            *(f"DELETE FROM {self.quote_name(table)};" for table in tables),  # noqa: S608 (Django's own table names)
        ]

    sql_flush.quick = True
    DatabaseOperations.sql_flush = sql_flush


def schema_digest() -> str:
    """A digest of what shapes the migrated schema: every installed app's migration files and the installed
    distributions' versions."""
    from django.apps import apps

    digest = hashlib.sha256()
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        folder = Path(config.path) / "migrations"
        digest.update(config.label.encode())
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for dist in sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()):
        digest.update(dist.encode())
    return digest.hexdigest()[:12]


def _admin_cursor(connection):
    """A cursor on the server's maintenance database (where CREATE/DROP DATABASE may run)."""
    return connection._nodb_cursor()


def _exists(cursor, name: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    return cursor.fetchone() is not None


def setup_from_template(connection, verbosity: int) -> bool:
    """Before Django's setup_databases(keepdb=True): give this worker's test database a fresh copy of the
    template when one exists for this schema (the caller then migrates nothing and keeps the data out), or make
    none and let the caller migrate (then `keep_template` saves it). True when cloned."""
    name = connection.creation._get_test_db_name()
    template = _TEMPLATE[connection.alias] = _template_name(name)
    with _admin_cursor(connection) as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [template])
        try:
            quoted = connection.ops.quote_name
            cursor.execute(f"DROP DATABASE IF EXISTS {quoted(name)}")
            if not _exists(cursor, template):
                return False
            cursor.execute(f"CREATE DATABASE {quoted(name)} TEMPLATE {quoted(template)}")
            if verbosity:
                print(f"test database {name} cloned from {template}")
            return True
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [template])


def keep_template(connection) -> None:
    """After a migration: save this worker's freshly migrated database as the template, unless another worker
    saved one first; drop templates of other schemas."""
    name = connection.settings_dict["NAME"]
    template = _TEMPLATE[connection.alias]
    prefix = template.rsplit("_", 1)[0] + "_"
    connection.close()
    with _admin_cursor(connection) as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [template])
        try:
            quoted = connection.ops.quote_name
            if not _exists(cursor, template):
                cursor.execute(f"CREATE DATABASE {quoted(template)} TEMPLATE {quoted(name)}")
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix.replace("_", r"\_") + "%"])
            for (other,) in cursor.fetchall():
                if other != template:
                    cursor.execute(f"DROP DATABASE IF EXISTS {quoted(other)}")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [template])


def _template_name(test_name: str) -> str:
    """The template of a test database's name: one for every pytest-xdist worker (test_portal_gw0, …)."""
    base = test_name.split("_gw")[0]
    return f"{base[:40]}_tpl_{schema_digest()}"
