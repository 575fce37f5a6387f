"""The pages' URLs: /status/ (namespace ``status``: live pages, the Studio, their
actions), /usage/, /metrics and /healthz (namespace ``history``)."""

from django.urls import include, path

from control_room.views import dashboard, health, sessions, studio, threads, usage

status_patterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("sessions/<uuid:pk>/", sessions.session_detail, name="session"),
    path("threads/<uuid:pk>/", threads.thread_detail, name="thread"),
    path("threads/<uuid:pk>/resume/", threads.resume_thread, name="thread_resume"),
    path("threads/<uuid:pk>/continue/", threads.continue_thread, name="thread_continue"),
    path("runs/<uuid:pk>/", threads.run_detail, name="run"),
    path("runs/<uuid:pk>/cancel/", threads.cancel_run, name="run_cancel"),
    path("runs/<uuid:pk>/retry/", threads.retry_run, name="run_retry"),
    # The offline Studio: workflows, checkpoints (edit, fork, replay), stuck work.
    path("workflows/", studio.workflow_list, name="workflows"),
    path("workflows/<uuid:pk>/", studio.workflow_detail, name="workflow"),
    path("workflows/<uuid:pk>/run/", studio.workflow_run, name="workflow_run"),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/",
        studio.checkpoint_detail,
        name="checkpoint",
    ),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/edit/",
        studio.checkpoint_edit,
        name="checkpoint_edit",
    ),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/fork/",
        studio.checkpoint_fork,
        name="checkpoint_fork",
    ),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/replay/",
        studio.checkpoint_replay,
        name="checkpoint_replay",
    ),
    path("stuck/", studio.stuck, name="stuck"),
    path("stuck/runs/<uuid:pk>/<str:action>/", studio.stuck_run_action, name="stuck_run"),
    path("stuck/threads/<uuid:pk>/fail/", studio.stuck_thread_fail, name="stuck_thread"),
]

history_patterns = [
    path("usage/", usage.usage_dashboard, name="usage"),
    path("usage/export.csv", usage.usage_export, name="usage_export"),
    path("metrics", health.metrics_view, name="metrics"),
    path("healthz", health.healthz, name="healthz"),
]

urlpatterns = [
    path("status/", include((status_patterns, "status"))),
    path("", include((history_patterns, "history"))),
]
