"""A GIN index on checkpoint metadata, PostgreSQL only.

``DjangoSaver.list(filter=...)`` filters by JSON containment (``metadata @> %s``) on
PostgreSQL; ``jsonb_path_ops`` indexes exactly that operator and stays small. SQLite has
no GIN index; the saver filters there by ``json_each`` per key.
"""

from django.db import migrations

INDEX = "checkpoint_metadata_gin"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("checkpoints_app", "Checkpoint")._meta.db_table
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON {schema_editor.quote_name(table)} "
        "USING gin (metadata jsonb_path_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ("checkpoints_app", "0002_checkpoint_storage"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
