"""/status/: live status pages (dashboard, sessions, threads) and their actions."""

from django.urls import path

from core import views as core_views
from sessions_app import views as session_views
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
]
