"""/status/: what is running right now, for staff.

Rendered complete on the server; the page then subscribes to the ``dashboard`` feed and
re-reads its body (``?fragment=body``) when something changes.
"""

from datetime import timedelta

from django.db.models import Q, Sum
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from control_room.pages import fragment_name, listing, staff_required
from core import live
from core.time import now
from history_app.models import Alert, DailyModelUsage
from sessions_app.models import Session
from threads_app.models import Run, Thread

LIST_LIMIT = 20
QUEUE_LIMIT = 10
ERROR_WINDOW = timedelta(hours=24)
NO_INTERRUPT = Q(interrupts=[]) | Q(interrupts__isnull=True)


def usage_today() -> dict:
    """Tokens, cost and calls of today (UTC), from the daily rollup."""
    sums = DailyModelUsage.objects.filter(day=now().date()).aggregate(
        tokens=Sum("total_tokens"), cost=Sum("cost_total"), calls=Sum("calls")
    )
    return {"tokens": sums["tokens"] or 0, "cost": sums["cost"] or 0, "calls": sums["calls"] or 0}


def _admin(url_name: str, query: str) -> str:
    return reverse(f"admin:{url_name}") + "?" + query


def dashboard_context() -> dict:
    moment = now()
    threads = Thread.objects.select_related("session", "workflow")
    runs = Run.objects.select_related("thread", "workflow")
    pending = Run.objects.filter(status=Run.Status.PENDING)
    oldest_pending = pending.order_by("created_at").values_list("created_at", flat=True).first()
    interrupted = threads.filter(status=Thread.Status.INTERRUPTED)
    failed = (Run.Status.ERROR, Run.Status.TIMEOUT)
    lists = {
        "running_threads": listing(
            threads.filter(status=Thread.Status.BUSY).order_by("-updated_at"),
            LIST_LIMIT,
            _admin("threads_app_thread_changelist", f"status__exact={Thread.Status.BUSY}"),
        ),
        # A thread waits for a human when it has a question; one restored or forked to
        # a checkpoint with nodes still to run (and no question) is only paused.
        "waiting_threads": listing(
            interrupted.exclude(NO_INTERRUPT).order_by("-updated_at"),
            LIST_LIMIT,
            _admin("threads_app_thread_changelist", f"status__exact={Thread.Status.INTERRUPTED}"),
        ),
        "paused_threads": listing(
            interrupted.filter(NO_INTERRUPT).order_by("-updated_at"),
            LIST_LIMIT,
            _admin("threads_app_thread_changelist", f"status__exact={Thread.Status.INTERRUPTED}"),
        ),
        "queued_runs": listing(
            pending.select_related("thread", "workflow").order_by("created_at"),
            QUEUE_LIMIT,
            _admin("threads_app_run_changelist", f"status__exact={Run.Status.PENDING}"),
        ),
        "expired_runs": listing(
            runs.filter(status=Run.Status.RUNNING, lease_expires_at__lt=moment).order_by(
                "lease_expires_at"
            ),
            LIST_LIMIT,
            _admin("threads_app_run_changelist", f"status__exact={Run.Status.RUNNING}"),
        ),
        "active_sessions": listing(
            Session.objects.filter(status=Session.Status.ACTIVE, active_thread_count__gt=0)
            .select_related("owner")
            .order_by("-last_activity_at"),
            LIST_LIMIT,
            _admin("sessions_app_session_changelist", f"status__exact={Session.Status.ACTIVE}"),
        ),
        "recent_errors": listing(
            runs.filter(status__in=failed, created_at__gte=moment - ERROR_WINDOW).order_by(
                "-created_at"
            ),
            QUEUE_LIMIT,
            _admin("threads_app_run_changelist", "status__in=" + ",".join(failed)),
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
            "running_runs": Run.objects.filter(status=Run.Status.RUNNING).count(),
        },
        "oldest_pending": oldest_pending,
        "usage_today": usage_today(),
        **lists,
        "alerts": list(Alert.objects.select_related("budget")[:10]),
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
