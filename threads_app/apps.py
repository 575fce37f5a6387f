from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ThreadsConfig(AppConfig):
    name = "threads_app"
    verbose_name = "Threads and runs"

    def ready(self):
        post_migrate.connect(_sync_workflows, sender=self, dispatch_uid="threads_app.sync")


def _sync_workflows(sender, using="default", **kwargs):
    """A system workflow for every graph in langgraph.json, after each migrate."""
    from threads_app import registry, services

    try:
        services.sync_system_workflows()
    except registry.GraphLoadError as exc:
        import logging

        logging.getLogger(__name__).warning("graphs not registered: %s", exc)
