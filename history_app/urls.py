from django.urls import path

from history_app import views

app_name = "history"

urlpatterns = [
    path("usage/", views.usage_dashboard, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage_export"),
    path("metrics", views.metrics_view, name="metrics"),
    path("healthz", views.healthz, name="healthz"),
]
