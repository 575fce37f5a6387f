"""Date and time formats of the admin (FORMAT_MODULE_PATH): the pages' one format,
to the second and with the zone (``2026-12-01 07:29:43 UTC``), never to the minute."""
