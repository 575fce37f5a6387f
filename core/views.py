"""/status/: what is running right now, for staff.

Rendered complete on the server; the page then subscribes to the ``dashboard`` feed and
re-reads its body (``?fragment=body``) when something changes. Models are looked up
through the app registry (core imports no app); history models are optional.
"""

from datetime import timedelta
from functools import wraps

from django.apps import apps
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Q, Sum
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import live
from core.time import now

LIST_LIMIT = 20
QUEUE_LIMIT = 10
ERROR_WINDOW = timedelta(hours=24)
NO_INTERRUPT = Q(interrupts=[]) | Q(interrupts__isnull=True)


def staff_required(view):
    """Anonymous: to the admin login. Logged in without staff: 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def optional_model(app_label: str, name: str):
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


def fragment_name(request, allowed) -> str | None:
    """The fragment a live page asks for (``?fragment=name``); 404 for an unknown one."""
    name = request.GET.get("fragment")
    if name is None:
        return None
    if name not in allowed:
        raise Http404("no such fragment")
    return name


def usage_today() -> dict:
    """Tokens, cost and calls of today (UTC), from the daily rollup."""
    rollup = optional_model("history_app", "DailyModelUsage")
    if rollup is None:
        return {"tokens": 0, "cost": None, "calls": 0}
    sums = rollup.objects.filter(day=now().date()).aggregate(
        tokens=Sum("total_tokens"), cost=Sum("cost_total"), calls=Sum("calls")
    )
    return {"tokens": sums["tokens"] or 0, "cost": sums["cost"] or 0, "calls": sums["calls"] or 0}


def listing(queryset, limit: int, admin_url: str = "") -> dict:
    """A capped list with the count of everything it stands for, and where the rest is."""
    rows = list(queryset[:limit])
    total = len(rows) if len(rows) < limit else queryset.count()
    return {"rows": rows, "total": total, "capped": total > len(rows), "admin_url": admin_url}


def _admin(url_name: str, query: str) -> str:
    return reverse(f"admin:{url_name}") + "?" + query


def dashboard_context() -> dict:
    Session = apps.get_model("sessions_app", "Session")
    Thread = apps.get_model("threads_app", "Thread")
    Run = apps.get_model("threads_app", "Run")
    Alert = optional_model("history_app", "Alert")
    moment = now()
    threads = Thread.objects.select_related("session", "workflow")
    runs = Run.objects.select_related("thread", "workflow")
    pending = Run.objects.filter(status="pending")
    oldest_pending = pending.order_by("created_at").values_list("created_at", flat=True).first()
    interrupted = threads.filter(status="interrupted")
    lists = {
        "running_threads": listing(
            threads.filter(status="busy").order_by("-updated_at"),
            LIST_LIMIT,
            _admin("threads_app_thread_changelist", "status__exact=busy"),
        ),
        # A thread waits for a human when it has a question; one restored or forked to
        # a checkpoint with nodes still to run (and no question) is only paused.
        "waiting_threads": listing(
            interrupted.exclude(NO_INTERRUPT).order_by("-updated_at"),
            LIST_LIMIT,
            _admin("threads_app_thread_changelist", "status__exact=interrupted"),
        ),
        "paused_threads": listing(
            interrupted.filter(NO_INTERRUPT).order_by("-updated_at"),
            LIST_LIMIT,
            _admin("threads_app_thread_changelist", "status__exact=interrupted"),
        ),
        "queued_runs": listing(
            pending.select_related("thread", "workflow").order_by("created_at"),
            QUEUE_LIMIT,
            _admin("threads_app_run_changelist", "status__exact=pending"),
        ),
        "expired_runs": listing(
            runs.filter(status="running", lease_expires_at__lt=moment).order_by("lease_expires_at"),
            LIST_LIMIT,
            _admin("threads_app_run_changelist", "status__exact=running"),
        ),
        "active_sessions": listing(
            Session.objects.filter(status="active", active_thread_count__gt=0)
            .select_related("owner")
            .order_by("-last_activity_at"),
            LIST_LIMIT,
            _admin("sessions_app_session_changelist", "status__exact=active"),
        ),
        "recent_errors": listing(
            runs.filter(
                status__in=("error", "timeout"), created_at__gte=moment - ERROR_WINDOW
            ).order_by("-created_at"),
            QUEUE_LIMIT,
            _admin("threads_app_run_changelist", "status__in=error,timeout"),
        ),
    }
    return {
        "now": moment,
        # Each figure counts what its list below stands for.
        "counts": {
            "active_sessions": lists["active_sessions"]["total"],
            "running_threads": lists["running_threads"]["total"],
            "waiting_threads": lists["waiting_threads"]["total"],
            "queue_depth": lists["queued_runs"]["total"],
            "expired_leases": lists["expired_runs"]["total"],
            "running_runs": Run.objects.filter(status="running").count(),
        },
        "oldest_pending": oldest_pending,
        "usage_today": usage_today(),
        **lists,
        "alerts": list(Alert.objects.select_related("budget")[:10]) if Alert else None,
    }


@never_cache
@require_GET
@staff_required
def dashboard(request):
    fragment = fragment_name(request, {"body"})
    context = dashboard_context() | {"feed": live.DASHBOARD_FEED}
    if fragment:
        return render(request, "status/dashboard/_body.html", context)
    return render(request, "status/dashboard.html", context)
