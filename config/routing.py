"""WebSocket routes (all under ws/)."""

from django.urls import path

from core.consumers import DashboardConsumer
from sessions_app.consumers import SessionConsumer
from threads_app.consumers import RunConsumer, ThreadConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/sessions/<uuid:pk>/", SessionConsumer.as_asgi()),
    path("ws/threads/<uuid:pk>/", ThreadConsumer.as_asgi()),
    path("ws/runs/<uuid:pk>/", RunConsumer.as_asgi()),
]
