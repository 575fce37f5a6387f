"""Prometheus metrics, read from the database at scrape time (any process can serve them).

Runs come from the runs table (by status; pending = the queue; running with an expired
lease = a dead worker the sweeper has not requeued yet); tokens and cost per model from
the daily rollup, so a scrape stays cheap however many calls there are.
"""

from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.time import now
from history_app.models import Alert, DailyModelUsage
from threads_app.models import Run

RUN_STATUSES = tuple(Run.Status.values)
FINAL_STATUSES = tuple(sorted(Run.FINAL_STATUSES))
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_WINDOW = timedelta(hours=1)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")


class StatehouseCollector:
    def collect(self):
        yield from self._runs()
        yield from self._usage()
        alerts = GaugeMetricFamily(
            "statehouse_budget_alerts", "Budget alerts raised (all time).", labels=["blocking"]
        )
        counts = dict(Alert.objects.values_list("blocking").annotate(n=Count("id")).order_by())
        for blocking in (False, True):
            alerts.add_metric([str(blocking).lower()], counts.get(blocking, 0))
        yield alerts

    def _runs(self):
        at = now()
        runs = Run._base_manager
        by_status = dict(runs.values_list("status").annotate(n=Count("id")).order_by())
        status = GaugeMetricFamily("statehouse_runs", "Runs by status.", labels=["status"])
        for name in sorted(set(RUN_STATUSES) | set(by_status)):
            status.add_metric([name], by_status.get(name, 0))
        yield status
        yield GaugeMetricFamily(
            "statehouse_run_queue_depth",
            "Runs waiting for a worker (status pending).",
            value=by_status.get(Run.Status.PENDING, 0),
        )
        yield GaugeMetricFamily(
            "statehouse_runs_lease_expired",
            "Running runs whose worker lease expired (a dead worker, not yet requeued).",
            value=runs.filter(status=Run.Status.RUNNING, lease_expires_at__lt=at).count(),
        )
        yield self._durations(runs, at)

    def _durations(self, runs, at):
        duration = ExpressionWrapper(
            F("finished_at") - F("started_at"), output_field=DurationField()
        )
        recent = runs.filter(
            status__in=FINAL_STATUSES,
            created_at__gte=at - DURATION_WINDOW,
            started_at__isnull=False,
            finished_at__isnull=False,
        ).annotate(duration=duration)
        aggregates = {
            f"le_{bound}": Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
            for bound in DURATION_BUCKETS
        }
        aggregates["count"] = Count("id")
        aggregates["total"] = Sum("duration")
        row = recent.aggregate(**aggregates)
        buckets = [(str(float(bound)), row[f"le_{bound}"]) for bound in DURATION_BUCKETS]
        buckets.append(("+Inf", row["count"]))
        total = row["total"]
        if isinstance(total, timedelta):
            seconds = total.total_seconds()
        else:  # a backend that sums durations as microseconds
            seconds = float(total or 0) / 1_000_000
        return GaugeHistogramMetricFamily(
            "statehouse_run_duration_seconds",
            "Duration of the runs created in the last hour that have finished.",
            buckets=buckets,
            gsum_value=seconds,
        )

    def _usage(self):
        rows = (
            DailyModelUsage.objects.values("provider", "model_name", "cost_source")
            .annotate(
                calls=Sum("calls"),
                input=Sum("input_tokens"),
                output=Sum("output_tokens"),
                cache_read=Sum("cache_read_tokens"),
                cache_write=Sum("cache_write_tokens"),
                reasoning=Sum("reasoning_tokens"),
                cost=Sum("cost_total"),
            )
            .order_by("provider", "model_name", "cost_source")
        )
        calls = CounterMetricFamily(
            "statehouse_llm_calls",
            "LLM calls by model and cost source.",
            labels=["provider", "model", "cost_source"],
        )
        tokens = CounterMetricFamily(
            "statehouse_llm_tokens",
            "LLM tokens by model and kind (input includes cache, output includes reasoning).",
            labels=["provider", "model", "kind"],
        )
        cost = CounterMetricFamily(
            "statehouse_llm_cost_usd",
            "LLM cost in US dollars by model (unpriced calls count nothing).",
            labels=["provider", "model"],
        )
        token_sums: dict = {}
        cost_sums: dict = {}
        for row in rows:
            model = (row["provider"], row["model_name"])
            calls.add_metric([*model, row["cost_source"]], row["calls"] or 0)
            for kind in TOKEN_KINDS:
                token_sums[(*model, kind)] = token_sums.get((*model, kind), 0) + (row[kind] or 0)
            cost_sums[model] = cost_sums.get(model, 0) + (row["cost"] or 0)
        for labels, value in token_sums.items():
            tokens.add_metric(list(labels), value)
        for labels, value in cost_sums.items():
            cost.add_metric(list(labels), float(value))
        yield calls
        yield tokens
        yield cost


def render() -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatehouseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
