"""Management commands used by `make run`."""

import io
import re

from django.contrib.auth import get_user_model
from django.core.management import call_command

from history_app.models import StateEvent
from sessions_app.models import Session


def _call(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_ensure_admin_prints_a_generated_password_once(db):
    first = _call("ensure_admin")
    password = re.search(r"password: (\S+)", first).group(1)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert len(password) >= 20

    second = _call("ensure_admin")
    assert password not in second
    assert "exists already" in second
    assert get_user_model().objects.count() == 1


def test_every_new_admin_gets_its_own_password(db):
    first = re.search(r"password: (\S+)", _call("ensure_admin")).group(1)
    get_user_model().objects.all().delete()
    second = re.search(r"password: (\S+)", _call("ensure_admin")).group(1)
    assert first != second


def test_load_demo_loads_once_through_the_state_manager(transactional_db):
    # Transactional: the demo's runs execute here, and LangGraph writes their
    # checkpoints from threads of its own, which must see the committed rows.
    _call("ensure_admin")
    assert "loaded:" in _call("load_demo")
    assert Session.objects.count() == 2
    assert "already" in _call("load_demo")
    assert Session.objects.count() == 2
    support = Session.objects.get(title__startswith="Demo: support")
    assert support.thread_count == 3
    assert StateEvent.objects.filter(actor="demo").exists()
