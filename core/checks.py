"""System checks: warn when embedded-only transports are used in production."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def embedded_transports_in_production(app_configs, **kwargs):
    if settings.DEBUG:
        return []
    warnings = []
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        warnings.append(
            Warning(
                "The Celery broker is the in-memory transport while DEBUG is off.",
                hint="Set REDIS_URL so runs survive restarts and reach worker processes.",
                id="statehouse.W001",
            )
        )
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        warnings.append(
            Warning(
                "The channel layer is in memory while DEBUG is off.",
                hint="Set REDIS_URL so live pushes reach every server process.",
                id="statehouse.W002",
            )
        )
    return warnings
