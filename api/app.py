"""The NinjaAPI at /api/: authentication, throttling, the error answers, and the routers.

Errors are ``{"detail": ...}`` with 400/401/404/409/413/422/429/503; authorization hides
other owners' objects behind 404.
"""

import kombu.exceptions
import redis
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from api import checkpoints, history, sessions
from api.auth import API_AUTH
from api.langgraph import router as langgraph_router
from api.langgraph.streaming import DatabaseLost
from api.parser import DepthCheckedParser, JSONTooDeep
from core.metadata import InvalidJSON
from core.state import EntityNotFound, InvalidState, StateConflict
from core.throttling import FailedAuthLimit, UserRateThrottle
from history_app.budgets import BudgetExceeded
from sessions_app.services import SessionNotFound
from threads_app import services as runs

api = NinjaAPI(
    title="Statehouse API",
    version="1.0",
    description=(
        "Sessions, history, usage and checkpoints, plus the LangGraph Server API "
        "(assistants, threads, runs) for the official langgraph-sdk client."
    ),
    auth=API_AUTH,
    throttle=[UserRateThrottle(settings.STATEHOUSE_API_RATE)],
    docs_decorator=staff_member_required,
    urls_namespace="api",
    parser=DepthCheckedParser(),
)
failed_auth_limit = FailedAuthLimit(settings.STATEHOUSE_API_FAILED_AUTH_RATE)

api.add_router("", langgraph_router)
api.add_router("", sessions.router)
api.add_router("", history.router)
api.add_router("", checkpoints.router)


def _detail(request, message, status):
    return api.create_response(request, {"detail": message}, status=status)


def unknown_path(request, *args, **kwargs):
    """Any path under /api/ that no route matches (config/urls.py): a JSON 404 too."""
    return _detail(request, "Not Found", 404)


@api.exception_handler(HttpError)
def http_error(request, exc):
    """ninja's own answer, but a body refused as nested too deep is a 422 saying so
    (ninja turns every parser error into a 400 "Cannot parse request body")."""
    if isinstance(exc.__cause__, JSONTooDeep):
        return _detail(request, str(exc.__cause__), 422)
    return _detail(request, str(exc), exc.status_code)


@api.exception_handler(ValidationError)
def invalid_request(request, exc):
    """422 ``{"detail": [errors]}`` as ninja (and FastAPI) shape it, each error's ``loc``
    without ninja's inner parameter name: ``["body", "on_disconnect"]``, not
    ``["body", "body", "on_disconnect"]``."""
    errors = []
    for error in exc.errors:
        loc = list(error.get("loc") or [])
        if len(loc) >= 2 and loc[0] == "body" and loc[1] == "body":
            del loc[1]
        errors.append({**error, "loc": loc})
    return api.create_response(request, {"detail": errors}, status=422)


@api.exception_handler(AuthenticationError)
def unauthorized(request, exc):
    bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
    if "X-Api-Key" in request.headers or bearer:
        message = "Authentication required: the API key is unknown or revoked"
    else:
        message = "Authentication required: an API key (X-Api-Key) or a login"
    if not failed_auth_limit.allow_request(request):
        response = _detail(request, "Too many requests that failed authentication", 429)
        response["Retry-After"] = str(max(int(failed_auth_limit.wait()), 1))
        return response
    return _detail(request, message, 401)


@api.exception_handler(redis.ConnectionError)
@api.exception_handler(redis.TimeoutError)
@api.exception_handler(kombu.exceptions.OperationalError)
def redis_unavailable(request, exc):
    """What needs Redis (the broker, the channel layer) when it cannot be reached."""
    message = "Service unavailable: Redis (the broker, the channel layer) is unreachable"
    return _detail(request, message, 503)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
@api.exception_handler(DatabaseLost)
def database_unavailable(request, exc):
    """The database cannot be reached (restarting, say): 503, and normal answers again
    once it is back (the broken connection is dropped at the request's end)."""
    response = _detail(request, "Database unavailable: try again in a few seconds", 503)
    response["Retry-After"] = "2"
    return response


@api.exception_handler(Http404)
@api.exception_handler(EntityNotFound)
@api.exception_handler(runs.WorkflowNotFound)
@api.exception_handler(runs.ThreadNotFound)
@api.exception_handler(SessionNotFound)
def not_found(request, exc):
    return _detail(request, str(exc) or "Not found", 404)


@api.exception_handler(StateConflict)
@api.exception_handler(runs.RunRejected)
@api.exception_handler(runs.RunFinished)
@api.exception_handler(runs.AlreadyExists)
@api.exception_handler(runs.StillActive)
def conflict(request, exc):
    return _detail(request, str(exc), 409)


@api.exception_handler(runs.InvalidRun)
@api.exception_handler(InvalidState)
@api.exception_handler(InvalidJSON)
def unprocessable(request, exc):
    return _detail(request, str(exc), 422)


@api.exception_handler(DataError)
def bad_value(request, exc):
    """The database refused a value from the request (a NUL character, a number too big)."""
    message = str(exc).splitlines()[0] if str(exc) else "invalid value"
    return _detail(request, f"A value in the request cannot be used: {message}", 422)


@api.exception_handler(RequestDataTooBig)
def too_large(request, exc):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _detail(request, f"Request body larger than {limit} bytes", 413)


@api.exception_handler(BudgetExceeded)
def over_budget(request, exc):
    return _detail(request, str(exc), 429)
