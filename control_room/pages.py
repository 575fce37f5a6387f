"""What the page views share: who is staff, staff-only pages, live fragments, capped
lists."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404


def is_staff(user) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)


def staff_required(view):
    """Anonymous: to the admin login. Logged in without staff: 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def fragment_name(request, allowed) -> str | None:
    """The fragment a live page asks for (``?fragment=name``); 404 for an unknown one."""
    name = request.GET.get("fragment")
    if name is None:
        return None
    if name not in allowed:
        raise Http404("no such fragment")
    return name


def listing(queryset, limit: int, admin_url: str = "") -> dict:
    """A capped list with the count of everything it stands for, and where the rest is."""
    rows = list(queryset[:limit])
    total = len(rows) if len(rows) < limit else queryset.count()
    return {"rows": rows, "total": total, "capped": total > len(rows), "admin_url": admin_url}
