"""Create an API key for a user; the key is printed once, on the last line."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.apikeys import create_api_key


class Command(BaseCommand):
    help = "Create an API key for USERNAME (printed once; store it now)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to tell keys apart.")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        key, secret = create_api_key(user, name)
        self.stderr.write(f"API key {key.prefix}… for {username} (shown once, store it now):")
        self.stdout.write(secret)
