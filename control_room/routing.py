"""WebSocket routes (all under ws/): the live feeds of the pages."""

from django.urls import path

from control_room.consumers import (
    DashboardConsumer,
    RunConsumer,
    SessionConsumer,
    ThreadConsumer,
)

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/sessions/<uuid:pk>/", SessionConsumer.as_asgi()),
    path("ws/threads/<uuid:pk>/", ThreadConsumer.as_asgi()),
    path("ws/runs/<uuid:pk>/", RunConsumer.as_asgi()),
]
