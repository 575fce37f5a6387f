"""System checks: warn when embedded-only transports are used in production, and refuse
the test suite's shortcuts in a deployment."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# Hashers fast enough to guess passwords with: only the test settings use one.
FAST_HASHERS = (
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.UnsaltedMD5PasswordHasher",
    "django.contrib.auth.hashers.UnsaltedSHA1PasswordHasher",
    "django.contrib.auth.hashers.SHA1PasswordHasher",
)


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


@register(Tags.security, deploy=True)
def fast_password_hashing(app_configs, **kwargs):
    """``check --deploy`` fails when new passwords would be stored with a fast hash."""
    if settings.PASSWORD_HASHERS and settings.PASSWORD_HASHERS[0] in FAST_HASHERS:
        return [
            Error(
                f"Passwords are hashed with {settings.PASSWORD_HASHERS[0].rsplit('.', 1)[-1]}.",
                hint="That is the test suite's setting (config.test_settings): deploy with "
                "DJANGO_SETTINGS_MODULE=config.settings.",
                id="statehouse.E001",
            )
        ]
    return []
