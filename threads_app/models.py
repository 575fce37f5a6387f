from django.conf import settings
from django.db import models

from core.models import StatefulModel
from core.statuses import FINAL_RUN_STATUSES, RunStatus, ThreadStatus
from core.time import now


class Workflow(StatefulModel):
    """A registered graph plus default config: what LangGraph calls an assistant."""

    state_entity_type = "workflow"

    graph_id = models.CharField(max_length=200, db_index=True)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Created from langgraph.json for each graph (id = uuid5 of the graph id).
    is_system = models.BooleanField(default=False)
    # Who created it (through the API or the admin); system workflows have none.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="workflows",
    )
    # The assistant version it is at (LangGraph's ``version``: each API create or patch
    # makes a WorkflowVersion; POST .../latest goes back to one). Not ``version``, the
    # optimistic-concurrency counter every change bumps.
    assistant_version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["graph_id", "name"]
        indexes = [models.Index(fields=["-created_at"], name="workflow_created")]

    def __str__(self) -> str:
        return self.name or self.graph_id


class WorkflowVersion(models.Model):
    """One version of an assistant: what it was after a create or a patch."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    graph_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["workflow", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version"], name="workflowversion_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version}"


class ThreadQuerySet(models.QuerySet):
    def lock(self, thread_id) -> "Thread | None":
        """The thread with its row locked until the transaction ends (None if it is gone).

        Lock order everywhere: a thread, then its runs. Run creation, claims, cancels,
        finishes, state updates and deletes all take the thread's lock first, so they
        queue on it instead of failing each other's version checks or deadlocking.
        """
        return self.select_for_update().filter(pk=thread_id).first()


class Thread(StatefulModel):
    """One LangGraph thread in a session."""

    Status = ThreadStatus  # LangGraph Server's thread statuses (core.statuses)

    state_entity_type = "thread"
    state_counter_fields = ("total_calls", "total_tokens", "total_cost")

    objects = ThreadQuerySet.as_manager()

    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="threads"
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.SET_NULL, null=True, blank=True, related_name="threads"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    config = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The graph's latest state values and pending interrupts (kept by the runtime).
    values = models.JSONField(default=dict, blank=True)
    interrupts = models.JSONField(default=list, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    # Running usage totals, kept by history_app (core.state.add_to_counters).
    total_calls = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    total_cost = models.DecimalField(max_digits=18, decimal_places=10, default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session", "status"], name="thread_session_status"),
            models.Index(fields=["status", "-updated_at"], name="thread_status_updated"),
            models.Index(fields=["-created_at"], name="thread_created"),
        ]

    def __str__(self) -> str:
        return f"Thread {self.short_id}"


class Run(StatefulModel):
    """One execution of a workflow on a thread."""

    Status = RunStatus  # interrupted = cancelled (core.statuses)

    class MultitaskStrategy(models.TextChoices):
        REJECT = "reject"
        ENQUEUE = "enqueue"
        INTERRUPT = "interrupt"
        ROLLBACK = "rollback"

    FINAL_STATUSES = FINAL_RUN_STATUSES

    state_entity_type = "run"

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="runs")
    workflow = models.ForeignKey(
        Workflow, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    input = models.JSONField(null=True, blank=True)
    command = models.JSONField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # stream_mode, interrupt_before/after, checkpoint_id and the other run options.
    kwargs = models.JSONField(default=dict, blank=True)
    multitask_strategy = models.CharField(
        max_length=16, choices=MultitaskStrategy.choices, default=MultitaskStrategy.ENQUEUE
    )
    not_before = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.CharField(max_length=16, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["thread", "-created_at"], name="run_thread_created"),
            models.Index(fields=["status", "created_at"], name="run_status_created"),
            models.Index(fields=["status", "lease_expires_at"], name="run_status_lease"),
            models.Index(fields=["-created_at"], name="run_created"),
        ]

    def __str__(self) -> str:
        return f"Run {self.short_id}"


class RunEvent(models.Model):
    """One streamed event of a run: append-only, ``seq`` increasing per run.

    Clients that connect late (or reconnect with ``Last-Event-ID``) replay from here.
    """

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    # LangGraph stream mode ("values", "updates", "messages", "custom", "debug") or one of
    # Statehouse's own ("metadata", "progress", "end", "error").
    event = models.CharField(max_length=32)
    namespace = models.CharField(max_length=255, blank=True, default="")
    data = models.JSONField(null=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="runevent_unique_seq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="runevent_created")]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.event}"
