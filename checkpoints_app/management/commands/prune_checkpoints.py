"""Apply checkpoint retention: keep the newest N per thread namespace, drop old ones."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from checkpoints_app.saver import DjangoSaver
from checkpoints_app.services import prune_checkpoints


class Command(BaseCommand):
    help = (
        "Delete old checkpoints (with their writes and unused blobs), keeping the newest "
        "--keep-last of each thread namespace and deleting those older than --max-age-days. "
        "Defaults: STATEHOUSE_CHECKPOINT_KEEP_LAST and STATEHOUSE_CHECKPOINT_MAX_AGE_DAYS; "
        "0 means no limit. A namespace's latest checkpoint is never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--keep-last", type=int, default=None)
        parser.add_argument("--max-age-days", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--database", default=None)
        parser.add_argument(
            "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
        )

    def handle(self, *args, keep_last, max_age_days, batch_size, database, dry_run, **options):
        if keep_last is None:
            keep_last = settings.STATEHOUSE_CHECKPOINT_KEEP_LAST
        if max_age_days is None:
            max_age_days = settings.STATEHOUSE_CHECKPOINT_MAX_AGE_DAYS
        if keep_last < 0 or max_age_days < 0 or batch_size < 1:
            raise CommandError("--keep-last and --max-age-days must be >= 0, --batch-size >= 1")
        if not keep_last and not max_age_days:
            self.stdout.write("No retention limit set (keep-last and max-age-days are 0).")
            return
        verb = "would delete" if dry_run else "deleted"
        verbosity = options["verbosity"]

        def on_thread(thread_id, deleted):
            if dry_run or verbosity > 1:
                by_ns: dict[str, list[str]] = {}
                for ns, checkpoint_id in deleted:
                    by_ns.setdefault(ns, []).append(checkpoint_id)
                for ns, ids in by_ns.items():
                    self.stdout.write(
                        f"thread {thread_id} namespace {ns!r}: {verb} {len(ids)} "
                        f"checkpoint(s): {', '.join(ids)}"
                    )

        report = prune_checkpoints(
            keep_last=keep_last,
            max_age_days=max_age_days,
            batch_size=batch_size,
            dry_run=dry_run,
            saver=DjangoSaver(using=database) if database else None,
            on_thread=on_thread,
        )
        for thread_id in report.skipped_threads:
            self.stdout.write(
                f"thread {thread_id}: skipped (uses a DeltaChannel; older checkpoints rebuild "
                "its latest values)"
            )
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}{verb} {report.checkpoints} checkpoint(s) "
            f"(keep last {keep_last or 'all'}, max age "
            f"{f'{max_age_days} days' if max_age_days else 'none'})."
        )
