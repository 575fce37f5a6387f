"""/status/: live status pages (dashboard, sessions, threads) and their actions."""

from django.urls import path

from core import views as core_views
from sessions_app import views as session_views
from threads_app import studio_views
from threads_app import views as thread_views

app_name = "status"

urlpatterns = [
    path("", core_views.dashboard, name="dashboard"),
    path("sessions/<uuid:pk>/", session_views.session_detail, name="session"),
    path("threads/<uuid:pk>/", thread_views.thread_detail, name="thread"),
    path("threads/<uuid:pk>/resume/", thread_views.resume_thread, name="thread_resume"),
    path("threads/<uuid:pk>/continue/", thread_views.continue_thread, name="thread_continue"),
    path("runs/<uuid:pk>/", thread_views.run_detail, name="run"),
    path("runs/<uuid:pk>/cancel/", thread_views.cancel_run, name="run_cancel"),
    path("runs/<uuid:pk>/retry/", thread_views.retry_run, name="run_retry"),
    # The offline Studio: workflows, checkpoints (edit, fork, replay), stuck work.
    path("workflows/", studio_views.workflow_list, name="workflows"),
    path("workflows/<uuid:pk>/", studio_views.workflow_detail, name="workflow"),
    path("workflows/<uuid:pk>/run/", studio_views.workflow_run, name="workflow_run"),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/",
        studio_views.checkpoint_detail,
        name="checkpoint",
    ),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/edit/",
        studio_views.checkpoint_edit,
        name="checkpoint_edit",
    ),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/fork/",
        studio_views.checkpoint_fork,
        name="checkpoint_fork",
    ),
    path(
        "threads/<uuid:pk>/checkpoints/<str:checkpoint_id>/replay/",
        studio_views.checkpoint_replay,
        name="checkpoint_replay",
    ),
    path("stuck/", studio_views.stuck, name="stuck"),
    path("stuck/runs/<uuid:pk>/<str:action>/", studio_views.stuck_run_action, name="stuck_run"),
    path("stuck/threads/<uuid:pk>/fail/", studio_views.stuck_thread_fail, name="stuck_thread"),
]
