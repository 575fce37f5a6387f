from django.apps import AppConfig


class ControlRoomConfig(AppConfig):
    name = "control_room"
    verbose_name = "Control room"
