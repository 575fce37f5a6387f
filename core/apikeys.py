"""API keys: creation (the secret is returned once) and verification."""

import hashlib
import hmac
import secrets
from datetime import timedelta

from core.models import ApiKey
from core.rowloader import row_where
from core.time import now

KEY_PREFIX = "sh_"
# last_used_at is written at most this often per key (not on every request).
TOUCH_EVERY = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(owner, name: str = "") -> tuple[ApiKey, str]:
    """A new key for ``owner``; returns the row and the full key (shown only once)."""
    prefix = KEY_PREFIX + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(owner=owner, name=name, prefix=prefix, hashed_key=_hash(secret))
    return key, secret


def _active_key(prefix):
    return ApiKey.objects.select_related("owner").filter(prefix=prefix, revoked_at__isnull=True)


def verify_api_key(secret: str | None) -> ApiKey | None:
    """The active key matching ``secret``, or None. Touches ``last_used_at``.

    Read with its SQL compiled once (core.rowloader.row_where): every API request comes
    here, and the ORM compiled the query anew each time (about 0.6 ms of CPU)."""
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    prefix = secret.split("_", 2)[:2]
    if len(prefix) != 2:
        return None
    key = row_where(_active_key, [ApiKey._meta.get_field("prefix")]).fetch("_".join(prefix))
    if key is None or not hmac.compare_digest(key.hashed_key, _hash(secret)):
        return None
    if not key.owner.is_active:
        return None
    moment = now()
    if key.last_used_at is None or moment - key.last_used_at > TOUCH_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=moment)
        key.last_used_at = moment
    return key


def revoke(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = now()
        key.save(update_fields=["revoked_at"])
