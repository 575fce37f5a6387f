"""Price LLM calls again after a price override changed or genai-prices was upgraded."""

from django.core.management.base import BaseCommand, CommandError

from core.time import parse
from history_app.models import LLMCall
from history_app.recording import REPRICE_SOURCES, reprice


class Command(BaseCommand):
    help = (
        "Recompute the cost of unpriced, computed and override-priced LLM calls (in batches), "
        "updating session and thread totals and the daily rollups in the same transactions."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--source",
            action="append",
            choices=[choice for choice, _label in LLMCall.CostSource.choices],
            help="Cost sources to reprice (repeatable; default: unpriced, computed, override).",
        )
        parser.add_argument("--since", help="Only calls on or after this day (YYYY-MM-DD).")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would change; write nothing."
        )

    def handle(self, *args, **options):
        since = None
        if options["since"]:
            try:
                since = parse(options["since"]).date()
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        result = reprice(
            sources=tuple(options["source"] or REPRICE_SOURCES),
            since=since,
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
        )
        verb = "would change" if options["dry_run"] else "changed"
        self.stdout.write(
            f"repriced: examined {result.examined} calls in {result.batches} batches, "
            f"{verb} {result.changed} ({result.priced} newly priced); "
            f"{result.unpriced} calls remain unpriced"
        )
