"""Who a live socket belongs to *now*, read from the session store without the session
and authentication middleware.

Why: every event pushed to a feed re-checks each of its sockets (a logout or a password
change made through another request must stop the socket). Done as Django does it
(``SessionStore(key)`` and ``django.contrib.auth.get_user`` per socket), a hundred
sockets cost a hundred session queries and signature checks per event. Here the checks of
one batch (``control_room.consumers.AccessChecks``) read every database-backed session
in one query, decode each distinct stored text once (the same text always decodes to
the same data), and read each user and its session auth hash once. The benchmark is
``bench/live.py`` (its ``live ... 100 clients`` lines: p95 from commit to delivery).

What it relies on in Django (pinned by ``tests/status/test_socket_auth.py``, which
fails when they change, and compares :func:`current_user` with ``get_user`` for the
same sessions):

- the keys a login writes into the session: ``SESSION_KEY``, ``BACKEND_SESSION_KEY``,
  ``HASH_SESSION_KEY`` (``django.contrib.auth``), and ``load_backend``;
- ``get_user``'s checks, repeated in :func:`current_user`: the backend must still be in
  ``AUTHENTICATION_BACKENDS``, and the session's hash must match the user's
  ``get_session_auth_hash()`` or one of ``get_session_auth_fallback_hash()`` (there
  ``get_user`` also rotates the session's hash; a socket never writes the session);
- the database backends' ``SessionStore.get_model_class()`` with its ``session_key``,
  ``session_data`` and ``expire_date`` columns, and ``SessionStore.decode(text)``
  (``cached_db`` is read from the database too; other engines one by one through
  ``SessionStore(key)``).
"""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.utils import timezone
from django.utils.crypto import constant_time_compare

# Decoded session data by its stored (signed) text: decoding verifies a signature, and
# the same text always decodes to the same data, so it is done once per text.
_decoded: dict[str, dict] = {}
DECODED_SESSIONS_KEPT = 10_000


def _decode(decoder, text: str) -> dict:
    data = _decoded.get(text)
    if data is None:
        data = decoder.decode(text)
        if len(_decoded) >= DECODED_SESSIONS_KEPT:
            _decoded.clear()
        _decoded[text] = data
    return data


class BatchCache:
    """What the checks of one batch read once: sessions, users, their session auth
    hashes, and permissions."""

    def __init__(self):
        self.sessions: dict[str, dict] = {}
        self.users: dict[tuple, object] = {}
        self.auth_hashes: dict[tuple, tuple[str, list[str]]] = {}
        self.permissions: dict[tuple, bool] = {}

    def prefetch_sessions(self, keys) -> None:
        """Read database-backed sessions in bulk (other engines are read one by one)."""
        store_class = import_module(settings.SESSION_ENGINE).SessionStore
        keys = [key for key in set(keys) if key and key not in self.sessions]
        if not keys or not issubclass(store_class, DatabaseStore):
            return
        decoder = store_class()
        model = store_class.get_model_class()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = model.objects.filter(session_key__in=chunk, expire_date__gt=timezone.now())
            found = dict(rows.values_list("session_key", "session_data"))
            for key in chunk:
                self.sessions[key] = _decode(decoder, found[key]) if key in found else {}

    def session(self, key: str) -> dict:
        if key not in self.sessions:
            store = import_module(settings.SESSION_ENGINE).SessionStore(key)
            self.sessions[key] = dict(store.items())
        return self.sessions[key]


def current_user(scope, cache: BatchCache | None = None):
    """The user the socket's session belongs to *now* (AnonymousUser once logged out)."""
    cache = cache or BatchCache()
    if "session" not in scope:
        # No session middleware (tests with a forced user): the user cannot log out, but
        # may have been changed (deactivated, demoted) since.
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            return AnonymousUser()
        key = ("", user.pk)
        if key not in cache.users:
            cache.users[key] = type(user)._default_manager.filter(pk=user.pk).first()
        return cache.users[key] or AnonymousUser()
    session_key = getattr(scope["session"], "session_key", None)
    if not session_key:
        return AnonymousUser()
    data = cache.session(session_key)
    user_id, backend_path = data.get(SESSION_KEY), data.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    key = (backend_path, str(user_id))
    if key not in cache.users:
        cache.users[key] = load_backend(backend_path).get_user(user_id)
    user = cache.users[key]
    if user is None:
        return AnonymousUser()
    if hasattr(user, "get_session_auth_hash"):
        if key not in cache.auth_hashes:
            fallbacks = list(user.get_session_auth_fallback_hash())
            cache.auth_hashes[key] = (user.get_session_auth_hash(), fallbacks)
        current, fallbacks = cache.auth_hashes[key]
        session_hash = data.get(HASH_SESSION_KEY)
        if not session_hash or not any(
            constant_time_compare(session_hash, known) for known in [current, *fallbacks]
        ):
            return AnonymousUser()  # the password changed: the session is no longer valid
    return user
