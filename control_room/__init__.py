"""The control room: the server-rendered pages, their live feeds, /metrics and /healthz.

The one package that may import every app; no app imports it.
"""
