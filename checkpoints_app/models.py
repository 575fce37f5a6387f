from django.db import models

from core.time import now

# Column sizes the saver checks input against (it refuses longer ids with a ValueError).
THREAD_ID_MAX = 255
CHECKPOINT_NS_MAX = 512
CHECKPOINT_ID_MAX = 64
CHANNEL_MAX = 255
VERSION_MAX = 100
TASK_ID_MAX = 255
RUN_ID_MAX = 255


class Checkpoint(models.Model):
    """One LangGraph checkpoint, stored as PostgresSaver stores it.

    ``checkpoint`` is the checkpoint without its channel values, except the primitive
    ones (None, bool, int, float, str), kept inline under ``channel_values``; the other
    values live in :class:`CheckpointBlob`, one row per channel version. ``thread_id`` is
    LangGraph's thread id (any string), not a foreign key: the saver serves any graph.
    """

    id = models.BigAutoField(primary_key=True)
    thread_id = models.CharField(max_length=THREAD_ID_MAX)
    checkpoint_ns = models.CharField(max_length=CHECKPOINT_NS_MAX, blank=True, default="")
    checkpoint_id = models.CharField(max_length=CHECKPOINT_ID_MAX)
    # NULL for the first checkpoint of a namespace, as in PostgresSaver.
    parent_checkpoint_id = models.CharField(  # noqa: DJ001
        max_length=CHECKPOINT_ID_MAX, null=True, blank=True
    )
    checkpoint = models.JSONField()
    # {channel: version} of the channels whose value is a blob, so that reads fetch
    # exactly those blobs (the others are inline or empty).
    blob_versions = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # metadata["run_id"], copied into a column so that delete_for_runs uses an index.
    run_id = models.CharField(max_length=RUN_ID_MAX, blank=True, default="")
    created_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["thread_id", "checkpoint_ns", "checkpoint_id"],
                name="checkpoint_thread_ns_id",
            )
        ]
        indexes = [
            # list() of a thread across its namespaces, newest first.
            models.Index(fields=["thread_id", "checkpoint_id"], name="checkpoint_thread_id"),
            # list() without a thread.
            models.Index(fields=["checkpoint_id"], name="checkpoint_id_idx"),
            models.Index(fields=["run_id"], name="checkpoint_run"),
            models.Index(fields=["created_at"], name="checkpoint_created"),
            # On PostgreSQL a GIN index on metadata (jsonb_path_ops) serves the
            # containment filters; it is made by migration 0003, PostgreSQL only.
        ]

    def __str__(self) -> str:
        return f"Checkpoint {self.checkpoint_id} of thread {self.thread_id}"

    @property
    def step(self):
        return (self.metadata or {}).get("step")

    @property
    def source(self):
        return (self.metadata or {}).get("source")


class CheckpointBlob(models.Model):
    """A channel's value at one version, serialized by the saver's serde."""

    pk = models.CompositePrimaryKey("thread_id", "checkpoint_ns", "channel", "version")
    thread_id = models.CharField(max_length=THREAD_ID_MAX)
    checkpoint_ns = models.CharField(max_length=CHECKPOINT_NS_MAX, blank=True, default="")
    channel = models.CharField(max_length=CHANNEL_MAX)
    version = models.CharField(max_length=VERSION_MAX)
    type = models.CharField(max_length=32)
    blob = models.BinaryField(null=True)

    def __str__(self) -> str:
        return f"{self.channel}@{self.version} of thread {self.thread_id}"


class CheckpointWrite(models.Model):
    """A pending write of a task, attached to the checkpoint it was made from."""

    pk = models.CompositePrimaryKey("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx")
    thread_id = models.CharField(max_length=THREAD_ID_MAX)
    checkpoint_ns = models.CharField(max_length=CHECKPOINT_NS_MAX, blank=True, default="")
    checkpoint_id = models.CharField(max_length=CHECKPOINT_ID_MAX)
    task_id = models.CharField(max_length=TASK_ID_MAX)
    idx = models.IntegerField()
    task_path = models.TextField(blank=True, default="")
    channel = models.CharField(max_length=CHANNEL_MAX)
    type = models.CharField(max_length=32, blank=True, default="")
    blob = models.BinaryField()

    def __str__(self) -> str:
        return f"Write {self.task_id}/{self.idx} to {self.channel}"


class RestorePoint(models.Model):
    """A point a thread can be restored to, recorded when the thread starts running.

    ``checkpoint_id`` names the thread's latest LangGraph checkpoint at that moment (none
    for a thread that has not run yet); ``snapshot`` is the thread's state then.
    """

    id = models.BigAutoField(primary_key=True)
    # Plain ids, not foreign keys: checkpoints outlive nothing they point at, and this
    # app does not depend on threads_app.
    thread_id = models.UUIDField()
    session_id = models.UUIDField(null=True, blank=True)
    thread_version = models.PositiveIntegerField()
    checkpoint_ns = models.CharField(max_length=255, blank=True, default="")
    checkpoint_id = models.CharField(max_length=64, blank=True, default="")
    trigger_reason = models.CharField(max_length=32, default="state_change")
    snapshot = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["thread_id", "-id"], name="restorepoint_thread")]

    def __str__(self) -> str:
        return f"Restore point {self.id} of thread {str(self.thread_id)[:8]}"
