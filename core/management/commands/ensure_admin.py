"""Create the first administrator with a generated password, printed once."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser with a generated password if there is none (printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args, username, email, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "An administrator exists already; its password is not shown again "
                "(reset it with: manage.py changepassword <username>)."
            )
            return
        password = secrets.token_urlsafe(18)
        User.objects.create_superuser(username=username, email=email, password=password)
        bar = "=" * 64
        self.stdout.write(
            f"{bar}\nAdministrator created. This password is shown only once:\n"
            f"  username: {username}\n  password: {password}\n{bar}"
        )
