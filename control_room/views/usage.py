"""/usage/: the usage dashboard and its CSV export (staff)."""

import csv
from datetime import date, timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET

from control_room import charts
from core import live
from core.time import now
from history_app import services
from history_app.models import DailyModelUsage, LLMCall
from history_app.recording import MODEL_FIELDS

MAX_DAYS = 366


def money(value) -> str:
    """Dollars as every page writes them (core.live.money)."""
    return live.money(value)


def tokens(value) -> str:
    value = int(value or 0)
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if value >= size * 10:
            return f"{value / size:,.1f}{unit}"
    return f"{value:,}"


def _days(request) -> int:
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    return min(max(days, 1), MAX_DAYS)


@staff_member_required
@require_GET
def usage_dashboard(request):
    days = _days(request)
    data = services.dashboard_data(days=days)
    series = data["series"]
    cost_chart = charts.bar_chart(
        [(row["day"].strftime("%m-%d"), row["cost"]) for row in series],
        fmt=money,
        title=f"Cost per day, last {days} days",
    )
    token_chart = charts.bar_chart(
        [(row["day"].strftime("%m-%d"), row["total_tokens"]) for row in series],
        fmt=tokens,
        title=f"Tokens per day, last {days} days",
    )
    context = data | {
        "cost_chart": cost_chart,
        "token_chart": token_chart,
        "series_desc": list(reversed(series)),
        "day_choices": (7, 30, 90),
        "now": now(),
    }
    return render(request, "history/usage.html", context)


class _Echo:
    def write(self, value):
        return value


def _export_range(request) -> tuple[date, date]:
    today = now().date()
    end = parse_date(request.GET.get("end") or "") or today
    start = parse_date(request.GET.get("start") or "") or end - timedelta(days=_days(request) - 1)
    if start > end:
        start, end = end, start
    return start, end


EXPORT_COLUMNS = [
    "day",
    "provider",
    "model",
    "cost_source",
    "calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_input_usd",
    "cost_output_usd",
    "cost_total_usd",
]


@staff_member_required
@require_GET
def usage_export(request):
    """Per day, model and cost source: the dashboard's numbers as CSV (?start=&end=, days)."""
    start, end = _export_range(request)
    rows = (
        DailyModelUsage.objects.filter(day__gte=start, day__lte=end, calls__gt=0)
        .order_by("day", "provider", "model_name", "cost_source")
        .values_list("day", "provider", "model_name", "cost_source", *MODEL_FIELDS)
    )
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(EXPORT_COLUMNS)
        for row in rows.iterator(chunk_size=2000):
            row = list(row)
            row[0] = row[0].isoformat()
            for index in (11, 12, 13):
                row[index] = f"{row[index]:f}"
            if row[3] == LLMCall.CostSource.UNPRICED:
                row[11] = row[12] = row[13] = ""
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    name = f"statehouse-usage-{start.isoformat()}-{end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
