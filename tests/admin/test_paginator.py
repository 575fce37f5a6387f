from core.admin import EstimatedCountPaginator
from history_app.models import StateEvent


def test_unfiltered_postgres_counts_use_the_planner_estimate(
    db, on_postgres, django_assert_num_queries
):
    from django.db import connection

    StateEvent.objects.bulk_create(
        StateEvent(
            entity_type="session",
            entity_id="00000000-0000-0000-0000-000000000001",
            kind="updated",
            version=i + 1,
            created_at="2026-01-01T00:00:00Z",
        )
        for i in range(50)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE history_app_stateevent")
    paginator = EstimatedCountPaginator(StateEvent.objects.all(), 10)
    paginator.exact_below = 10  # pretend the table is large

    with django_assert_num_queries(1) as captured:
        count = paginator.count
    assert "COUNT(" not in captured.captured_queries[0]["sql"].upper()
    # Just analyzed, the estimate is the table's true size (migrations added a few rows).
    assert count == StateEvent.objects.count() >= 50


def test_filtered_and_small_tables_are_counted_exactly(db):
    paginator = EstimatedCountPaginator(StateEvent.objects.filter(entity_type="run"), 10)
    assert paginator.count == 0
