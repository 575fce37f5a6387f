"""API authentication: API keys (X-Api-Key or Authorization: Bearer) or a browser session.

A session is accepted with Django's CSRF check on unsafe methods (ninja's SessionAuth).
Every request is authenticated; there is no anonymous access.
"""

from ninja.security import APIKeyHeader, HttpBearer, SessionAuth

from core.apikeys import verify_api_key


def _owner(request, secret):
    key = verify_api_key(secret)
    if key is None:
        return None
    request.api_key = key
    return key.owner


class ApiKeyHeaderAuth(APIKeyHeader):
    """The header langgraph-sdk sends."""

    param_name = "X-Api-Key"

    def authenticate(self, request, key):
        return _owner(request, key)


class BearerKeyAuth(HttpBearer):
    def authenticate(self, request, token):
        return _owner(request, token)


class ActiveSessionAuth(SessionAuth):
    """A logged-in browser. CSRF is checked for logged-in users only: a request with no
    session (an SDK with a wrong or revoked key, say) is told it is not authenticated
    (401), not that a CSRF token it never had is missing (ninja's 403)."""

    def _get_key(self, request):
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)

    def authenticate(self, request, key):
        user = request.user
        return user if user.is_authenticated and user.is_active else None


API_AUTH = [ApiKeyHeaderAuth(), BearerKeyAuth(), ActiveSessionAuth()]
