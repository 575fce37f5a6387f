"""The JSON API at /api/: the LangGraph Server surface (``api.langgraph``) and Statehouse's
own resources (sessions, history, checkpoints), assembled in ``api.app``.

A delivery layer: routes parse the request, authorize it, call a domain service and
shape the answer. No domain app imports it.
"""
