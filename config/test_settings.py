"""Settings of the test suite, and of the servers and workers it starts.

Only pytest names this module (``DJANGO_SETTINGS_MODULE`` in pyproject.toml's pytest
section, which pytest-django also exports to the processes the tests start); no
environment variable turns these bits on in ``config.settings``.
"""

import os
import secrets

from config.env import env_bool

# The test run never needs a real secret: with DEBUG off, one is made for the run unless
# one is set, and the processes the tests start inherit it. With DEBUG on, settings uses
# the key file in STATEHOUSE_VAR_DIR, as in development.
if not (os.environ.get("SECRET_KEY") or env_bool("DEBUG", False)):
    os.environ["SECRET_KEY"] = "test-only-" + secrets.token_urlsafe(40)

from config.settings import *  # noqa: F403

# Fast hashing for the many users tests create.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Static files straight from the app folders (no collectstatic in tests).
WHITENOISE_USE_FINDERS = True
