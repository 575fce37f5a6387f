"""Usage history at scale on PostgreSQL: the dashboard's queries over a million LLM calls.

Generates (once; reused while the counts match) 1,000,000 LLM calls over 90 days in
1,000 sessions of 100 users with 50 models (2 of them unknown to genai-prices, so
unpriced), with INSERT ... SELECT generate_series, then fills the daily rollups and the
session/thread totals from the calls, exactly as recording would have. Then, after
VACUUM ANALYZE, times each query of the usage dashboard, a session's usage summary, the
LLM call admin changelist filtered by model (through the Django test client, logged in
as staff) and the recording of single calls.

    python bench/history.py      # BENCH_DATABASE_URL overrides the scratch database
"""

import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import setup

CALLS = 1_000_000
SESSIONS = 1_000
USERS = 100
MODELS = 50
UNKNOWN_MODELS = 2
DAYS = 90
THREADS_PER_SESSION = 2
REPEAT = 5
TARGET_DASHBOARD_MS = 500
TARGET_CHANGELIST_MS = 300
TARGET_RECORD_MS = 2  # issue 16: paid on every model call of every run
TAG = "bench-history"


def pick_models():
    """48 priced models from genai-prices' bundled data (plain per-token prices), 2 unknown."""
    from genai_prices.data import providers
    from genai_prices.types import ModelPrice

    picked = []
    wanted = ("openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "cohere", "groq")
    for provider in providers:
        if provider.id not in wanted:
            continue
        for model in provider.models:
            prices = model.prices
            if not isinstance(prices, ModelPrice):
                continue
            rates = (prices.input_mtok, prices.output_mtok)
            taken = any(name == model.id for _provider, name in picked)
            if not taken and all(isinstance(rate, Decimal) and rate > 0 for rate in rates):
                picked.append((provider.id, model.id))
            if len(picked) == MODELS - UNKNOWN_MODELS:
                break
        if len(picked) == MODELS - UNKNOWN_MODELS:
            break
    picked += [("acme", f"acme-llm-{i}") for i in range(UNKNOWN_MODELS)]
    return picked


def model_rates(models):
    """Per-million-token rates (input, cache read, output) as genai-prices prices them."""
    from core.time import now
    from history_app import pricing

    at = now()
    million = 1_000_000
    rows = []
    for provider, name in models:
        base = pricing.library_price(provider, name, pricing.Tokens(input=million), at)
        if base.source == "unpriced":
            rows.append((provider, name, None, None, None))
            continue
        cached = pricing.library_price(
            provider, name, pricing.Tokens(input=million, cache_read=million), at
        )
        out = pricing.library_price(provider, name, pricing.Tokens(output=million), at)
        rows.append((provider, name, base.total, cached.total, out.total))
    return rows


def existing_data_matches() -> bool:
    from django.db import connection

    from history_app.models import DailyModelUsage
    from sessions_app.models import Session

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM history_app_llmcall")
        calls = cursor.fetchone()[0]
    sessions = Session.objects.filter(metadata__bench=TAG).count()
    models = DailyModelUsage.objects.values("model_name").distinct().count()
    return calls == CALLS and sessions == SESSIONS and models == MODELS


def generate() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from core.time import now
    from sessions_app.models import Session
    from threads_app.models import Run, Thread

    started = time.perf_counter()
    User = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE history_app_llmcall, history_app_dailymodelusage, "
            "history_app_dailysessionusage, history_app_alert, history_app_message"
        )
    Session.objects.filter(metadata__bench=TAG).delete()
    users = []
    for i in range(USERS):
        user, _ = User.objects.get_or_create(username=f"bench-user-{i:03d}")
        users.append(user)
    at = now()
    sessions = Session.objects.bulk_create(
        Session(
            owner=users[i % USERS],
            title=f"Bench session {i}",
            metadata={"bench": TAG},
            created_at=at,
            updated_at=at,
        )
        for i in range(SESSIONS)
    )
    threads = Thread.objects.bulk_create(
        Thread(session=session, created_at=at, updated_at=at)
        for session in sessions
        for _ in range(THREADS_PER_SESSION)
    )
    runs = Run.objects.bulk_create(
        Run(thread=thread, status="success", created_at=at, updated_at=at) for thread in threads
    )
    rates = model_rates(pick_models())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_places (idx int, session_id uuid, thread_id uuid, "
            "run_id uuid, user_id bigint) ON COMMIT DROP"
        )
        cursor.executemany(
            "INSERT INTO bench_places VALUES (%s, %s, %s, %s, %s)",
            [
                (i, run.thread.session_id, run.thread_id, run.pk, run.thread.session.owner_id)
                for i, run in enumerate(runs)
            ],
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_models (idx int, provider text, name text, "
            "rate_in numeric, rate_cached numeric, rate_out numeric) ON COMMIT DROP"
        )
        cursor.executemany(
            "INSERT INTO bench_models VALUES (%s, %s, %s, %s, %s, %s)",
            [(i, *row) for i, row in enumerate(rates)],
        )
        cursor.execute("SELECT setseed(0.42)")
        # Calls: a random place, a skewed choice of model (a few models take most calls),
        # a random time in the last 90 days, realistic token counts.
        cursor.execute(
            """
            WITH raw AS (
                SELECT g,
                       (random() * %(places)s)::int %% %(places)s AS place,
                       least(floor(power(random(), 2) * %(models)s)::int, %(models)s - 1) AS model,
                       now() - random() * %(days)s * interval '1 day' AS started_at,
                       200 + (random() * 4000)::int AS input_tokens,
                       random() AS cache_share,
                       50 + (random() * 1500)::int AS output_tokens,
                       random() < 0.3 AS reasons
                FROM generate_series(1, %(calls)s) AS g
            ), calls AS (
                SELECT raw.*, (input_tokens * cache_share * 0.5)::int AS cache_read,
                       CASE WHEN reasons THEN output_tokens / 4 ELSE 0 END AS reasoning
                FROM raw
            )
            INSERT INTO history_app_llmcall (
                lc_run_id, lc_parent_run_id, session_id, thread_id, run_id, user_id,
                node, step, provider, model_name, resolved_model, started_at, latency_ms, day,
                input_tokens, output_tokens, total_tokens, cache_read_tokens,
                cache_write_tokens, reasoning_tokens, usage, usage_valid,
                cost_input, cost_output, cost_total, cost_source, pricing_version, created_at
            )
            SELECT gen_random_uuid(), gen_random_uuid(), p.session_id, p.thread_id, p.run_id,
                   p.user_id, 'agent', 1 + (c.g %% 7), m.provider, m.name,
                   CASE WHEN m.rate_in IS NULL THEN '' ELSE m.provider || '/' || m.name END,
                   c.started_at, 300 + (c.g %% 5000), (c.started_at AT TIME ZONE 'UTC')::date,
                   c.input_tokens, c.output_tokens, c.input_tokens + c.output_tokens,
                   c.cache_read, 0, c.reasoning,
                   jsonb_build_object(
                       'input_tokens', c.input_tokens, 'output_tokens', c.output_tokens,
                       'total_tokens', c.input_tokens + c.output_tokens,
                       'input_token_details', jsonb_build_object('cache_read', c.cache_read),
                       'output_token_details', jsonb_build_object('reasoning', c.reasoning)),
                   true,
                   round(((c.input_tokens - c.cache_read) * m.rate_in
                          + c.cache_read * m.rate_cached) / 1000000, 10),
                   round(c.output_tokens * m.rate_out / 1000000, 10),
                   round(((c.input_tokens - c.cache_read) * m.rate_in
                          + c.cache_read * m.rate_cached) / 1000000, 10)
                   + round(c.output_tokens * m.rate_out / 1000000, 10),
                   CASE WHEN m.rate_in IS NULL THEN 'unpriced' ELSE 'computed' END,
                   CASE WHEN m.rate_in IS NULL THEN '' ELSE 'bench' END,
                   c.started_at
            FROM calls c
            JOIN bench_places p ON p.idx = c.place
            JOIN bench_models m ON m.idx = c.model
            """,
            {"places": len(runs), "models": MODELS, "days": DAYS, "calls": CALLS},
        )
        rebuild_totals(cursor)
    print(
        f"history generated {CALLS:,} calls, {SESSIONS:,} sessions, {MODELS} models over "
        f"{DAYS} days in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def rebuild_totals(cursor) -> None:
    """Rollups and session/thread totals from the calls (what recording keeps up)."""
    cursor.execute(
        """
        INSERT INTO history_app_dailymodelusage (
            day, provider, model_name, cost_source, calls, input_tokens, output_tokens,
            total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
            cost_input, cost_output, cost_total)
        SELECT day, provider, model_name, cost_source, count(*), sum(input_tokens),
               sum(output_tokens), sum(total_tokens), sum(cache_read_tokens),
               sum(cache_write_tokens), sum(reasoning_tokens), coalesce(sum(cost_input), 0),
               coalesce(sum(cost_output), 0), coalesce(sum(cost_total), 0)
        FROM history_app_llmcall GROUP BY day, provider, model_name, cost_source
        """
    )
    cursor.execute(
        """
        INSERT INTO history_app_dailysessionusage (
            day, session_id, user_id, calls, unpriced_calls, input_tokens, output_tokens,
            total_tokens, cost_total)
        SELECT day, session_id, user_id, count(*),
               count(*) FILTER (WHERE cost_source = 'unpriced'), sum(input_tokens),
               sum(output_tokens), sum(total_tokens), coalesce(sum(cost_total), 0)
        FROM history_app_llmcall GROUP BY day, session_id, user_id
        """
    )
    cursor.execute(
        """
        UPDATE sessions_app_session s SET total_calls = t.calls,
               total_input_tokens = t.input, total_output_tokens = t.output,
               total_tokens = t.total, total_cost = t.cost
        FROM (SELECT session_id, count(*) AS calls, sum(input_tokens) AS input,
                     sum(output_tokens) AS output, sum(total_tokens) AS total,
                     coalesce(sum(cost_total), 0) AS cost
              FROM history_app_llmcall GROUP BY session_id) t
        WHERE s.id = t.session_id
        """
    )
    cursor.execute(
        """
        UPDATE threads_app_thread h SET total_calls = t.calls, total_tokens = t.total,
               total_cost = t.cost
        FROM (SELECT thread_id, count(*) AS calls, sum(total_tokens) AS total,
                     coalesce(sum(cost_total), 0) AS cost
              FROM history_app_llmcall GROUP BY thread_id) t
        WHERE h.id = t.thread_id
        """
    )


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            "history_app_llmcall",
            "history_app_dailymodelusage",
            "history_app_dailysessionusage",
            "sessions_app_session",
            "threads_app_thread",
        ):
            cursor.execute(f"VACUUM (ANALYZE) {table}")


def timed(fn):
    """Median milliseconds of REPEAT runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def report(name: str, ms: float, target: float | None, detail: str) -> bool:
    verdict = "" if target is None else ("" if ms <= target else "  OVER TARGET")
    target_text = f" (target {target:.0f} ms)" if target is not None else ""
    print(f"history {name}: {ms:.1f} ms{target_text} {detail}{verdict}", flush=True)
    return target is None or ms <= target


def measure() -> bool:
    from django.db.models import Sum
    from django.test import Client
    from django.urls import reverse

    from core.time import now
    from history_app import services
    from history_app.models import DailyModelUsage, LLMCall
    from sessions_app.models import Session

    total = f"over {CALLS:,} calls"
    end = now().date()
    start = end - timedelta(days=29)
    ok = True
    queries = {
        "cost_by_day": lambda: services.daily_series(start, end),
        "totals": lambda: [services.usage_totals(start=start, end=end)],
        "top_models": lambda: services.usage_by("model", start=start, end=end, limit=10),
        "top_sessions": lambda: services.top_sessions(start, end),
        "top_users": lambda: services.top_users(start, end),
        "unpriced_calls": lambda: services.unpriced_summary(),
    }
    for name, query in queries.items():
        ms, rows = timed(query)
        ok &= report(f"dashboard {name}", ms, TARGET_DASHBOARD_MS, f"{total}, {len(rows)} rows")

    def raw_cost_by_day():
        rows = LLMCall.objects.filter(day__gte=start, day__lte=end).values("day")
        return list(rows.annotate(cost=Sum("cost_total"), tokens=Sum("total_tokens")))

    ms, rows = timed(raw_cost_by_day)
    in_range = LLMCall.objects.filter(day__gte=start, day__lte=end).count()
    report(
        "cost_by_day from the calls table, without the rollup (comparison)",
        ms,
        None,
        f"{in_range:,} calls in range, {len(rows)} rows",
    )

    session = Session.objects.filter(metadata__bench=TAG).order_by("-total_calls").first()
    ms, summary = timed(lambda: services.session_usage(session))
    ok &= report(
        "session usage summary",
        ms,
        TARGET_DASHBOARD_MS,
        f"{summary['totals']['calls']:,} calls of one session, "
        f"{len(summary['by_model'])} models, {len(summary['by_day'])} days",
    )

    from django.contrib.auth import get_user_model

    staff, _ = get_user_model().objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(staff)
    model = (
        DailyModelUsage.objects.filter(cost_source="computed")
        .order_by("-calls")
        .values_list("model_name", flat=True)
        .first()
    )
    url = reverse("admin:history_app_llmcall_changelist")
    in_model = LLMCall.objects.filter(model_name=model).count()

    def changelist():
        response = client.get(url, {"model_name": model})
        assert response.status_code == 200, response.status_code
        return response.content.decode().split('class="field-model_name"')[1:]

    ms, rows = timed(changelist)
    ok &= report(
        "admin changelist (model filter)",
        ms,
        TARGET_CHANGELIST_MS,
        f"{total}, {in_model:,} of model {model}, first page {len(rows)} rows",
    )

    def page():
        response = client.get(reverse("history:usage"))
        assert response.status_code == 200, response.status_code
        return [response]

    ms, _ = timed(page)
    report("dashboard page (all queries + render)", ms, None, total)
    ok &= record_calls(session)
    return ok


def record_calls(session) -> bool:
    """Recording cost: the call insert, totals and rollups, one transaction per call."""
    from django.db import transaction

    from core.time import now
    from history_app.models import DailyModelUsage, DailySessionUsage, LLMCall
    from history_app.pricing import Tokens
    from history_app.recording import CallRecord, Deltas, record_llm_call
    from threads_app.models import Thread

    thread = Thread.objects.filter(session=session).first()
    count = 200
    start = time.perf_counter()
    for _ in range(count):
        record_llm_call(
            CallRecord(
                lc_run_id=uuid.uuid4(),
                session_id=session.pk,
                thread_id=thread.pk,
                user_id=session.owner_id,
                started_at=now(),
                provider="openai",
                model_name="gpt-4o-2024-08-06",
                tokens=Tokens(input=1200, output=300, total=1500, cache_read=200),
                usage={},
            )
        )
    ms = (time.perf_counter() - start) * 1000 / count
    met = ms <= TARGET_RECORD_MS
    print(
        f"history record one LLM call (insert + totals + rollups): {ms:.1f} ms mean of "
        f"{count}, target <= {TARGET_RECORD_MS:.0f} ms: {'met' if met else 'missed'}",
        flush=True,
    )
    # Take them out again (totals and rollups too), so the next run can reuse the data.
    extra = LLMCall.objects.filter(started_at__gte=now() - timedelta(hours=1), node="")
    deltas = Deltas()
    for call in extra:
        deltas.add(call, sign=-1)
    with transaction.atomic():
        deltas.apply()
        extra.delete()
        DailyModelUsage.objects.filter(calls=0).delete()
        DailySessionUsage.objects.filter(calls=0).delete()
    return met


def main() -> int:
    setup("postgresql")
    from core import realtime

    realtime.push = lambda groups, payload: None  # no live pushes from a benchmark
    if existing_data_matches():
        print("history reusing the generated data", flush=True)
    else:
        generate()
    vacuum_analyze()
    return 0 if measure() else 1


if __name__ == "__main__":
    sys.exit(main())
