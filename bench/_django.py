"""Set up Django for a benchmark on a scratch database of its own."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgres://root@127.0.0.1:5432/statehouse_bench"


DEFAULT_REDIS = "redis://127.0.0.1:6379/3"


def setup(backend: str, redis: bool = False) -> None:
    """Configure settings for ``backend`` ("sqlite" or "postgresql"), create and migrate it.

    With ``redis``, Celery and the channel layer use Redis (BENCH_REDIS_URL) as in
    production; otherwise the in-memory transports.
    """
    sys.path.insert(0, str(ROOT))
    # The test settings: a secret key generated for the run, as in the test suite.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if redis:
        os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    else:
        os.environ.pop("REDIS_URL", None)
    if backend == "postgresql":
        url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG)
        _create_pg_database(url)
        os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["STATEHOUSE_VAR_DIR"] = tempfile.mkdtemp(prefix="statehouse-bench-")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def _create_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
