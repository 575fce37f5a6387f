from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Statehouse core"

    def ready(self):
        from core import admin_apikeys, checks, handlers  # noqa: F401  (registers them)
        from core.events import state_changed

        state_changed.connect(handlers.push_after_commit, dispatch_uid="core.realtime.push")
