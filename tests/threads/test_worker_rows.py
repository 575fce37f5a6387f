"""What a worker writes while a run goes: the heartbeat's lease renewal and the event
log, each in as few statements as they need."""

import pytest

from core.time import now
from tests.factories import make_session
from threads_app import lifecycle, runtime, services
from threads_app.models import Run, RunEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running(alice, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda *args, **kwargs: None)
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    run = services.create_run(thread, input={"steps": 1})
    return runtime.claim_run(run.pk, "worker-a")


def test_a_beat_renews_the_lease_in_one_statement(running, django_assert_num_queries):
    heartbeat = runtime.Heartbeat(running, "worker-a")
    before = Run.objects.get(pk=running.pk).lease_expires_at

    with django_assert_num_queries(1):
        heartbeat.beat()

    assert not heartbeat.lease_lost
    assert Run.objects.get(pk=running.pk).lease_expires_at > before


def test_a_cancel_request_keeps_the_lease_renewed(running):
    services.cancel_run(running.pk, actor="ops")  # the worker stops at its next step
    heartbeat = runtime.Heartbeat(running, "worker-a")
    before = Run.objects.get(pk=running.pk).lease_expires_at

    heartbeat.beat()

    assert not heartbeat.lease_lost
    assert Run.objects.get(pk=running.pk).lease_expires_at > before


@pytest.mark.parametrize("taken", ["requeued", "failed"])
def test_a_run_no_longer_ours_loses_the_lease(running, taken):
    current = Run.objects.get(pk=running.pk)
    if taken == "requeued":
        lifecycle.run_requeued(current, actor="sweeper")
    else:
        lifecycle.run_failed(current, "stuck", actor="ops")
    heartbeat = runtime.Heartbeat(running, "worker-a")

    heartbeat.beat()

    assert heartbeat.lease_lost


def test_a_first_attempt_s_log_starts_without_a_read(running, django_assert_num_queries):
    with django_assert_num_queries(0):
        log = runtime.EventLog(running)
    assert log.seq == 0


def test_a_later_attempt_s_log_goes_on_after_the_last_event(running, django_assert_num_queries):
    first = runtime.EventLog(running)
    first.add("metadata", {"attempt": 1})
    first.add("values", {"n": 1})
    first.flush()
    requeued = lifecycle.run_requeued(Run.objects.get(pk=running.pk), actor="sweeper")
    again = runtime.claim_run(requeued.pk, "worker-b")

    with django_assert_num_queries(1):
        log = runtime.EventLog(again)

    assert log.seq == 2


def test_a_flush_is_one_insert_outside_a_transaction(running, django_assert_num_queries):
    log = runtime.EventLog(running)
    log.add("metadata", {"a": 1})
    log.add("end", None)

    with django_assert_num_queries(1):  # no BEGIN and COMMIT around it
        log.flush()

    rows = list(RunEvent.objects.filter(run=running).order_by("seq"))
    assert [(row.seq, row.event, row.data) for row in rows] == [
        (1, "metadata", {"a": 1}),
        (2, "end", None),
    ]
    assert RunEvent.objects.filter(run=running, data__isnull=True).count() == 1  # SQL NULL


def test_a_large_batch_is_written_whole_in_parts(running):
    events = [
        RunEvent(run=running, seq=seq, event="messages", data=[seq], created_at=now())
        for seq in range(1, 1201)
    ]

    runtime._insert_events(events)

    seqs = list(RunEvent.objects.filter(run=running).values_list("seq", flat=True))
    assert sorted(seqs) == list(range(1, 1201))
