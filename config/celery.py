"""The Celery app. Broker: Redis in production, ``memory://`` in embedded mode."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("statehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect(dispatch_uid="statehouse.task_connections.prerun")
@task_postrun.connect(dispatch_uid="statehouse.task_connections.postrun")
def release_task_connections(task=None, **kwargs) -> None:
    """A task's connections as a request's: obsolete or broken ones closed, pooled ones
    returned to the pool (settings.CELERY_DB_REUSE_MAX says why Celery's own close is
    held back). An eager task runs inside its caller, whose connection it leaves alone.

    Celery's Django fixup closes Django's pool in each prefork child (and every
    2 x CELERY_DB_REUSE_MAX tasks); the pool Django then makes again gets the idle-only
    check too, or every lend in a worker would cost a round trip."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    close_old_connections()
    from checkpoints_app.connections import check_django_pools_when_idle

    check_django_pools_when_idle()
