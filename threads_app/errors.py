"""Errors of thread and run use cases that more than one module raises (a module of its
own, so that ``validation`` and ``services`` need not import each other)."""


class InvalidRun(ValueError):
    """The run request is malformed; nothing was created."""
