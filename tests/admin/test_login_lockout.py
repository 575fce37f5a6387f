"""The admin login locks out a username from one client address after repeated failures."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

LOGIN = reverse("admin:login")


def _login(client, username, password, address="203.0.113.7", **headers):
    client.cookies.clear()
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": reverse("admin:index")},
        REMOTE_ADDR=address,
        **headers,
    )


def _fail(client, username, times, **kwargs):
    return [_login(client, username, "wrong", **kwargs).status_code for _ in range(times)]


@pytest.fixture
def limit(settings):
    return settings.AXES_FAILURE_LIMIT


def test_the_login_locks_out_after_the_failure_limit(client, staff, limit):
    assert _fail(client, "staff", limit - 1) == [200] * (limit - 1)  # the form, with its error

    locked = _login(client, "staff", "wrong")
    right_password = _login(client, "staff", "pw-staff")

    assert locked.status_code == 429
    assert right_password.status_code == 429
    body = right_password.content.decode()
    assert "Login locked: too many failed attempts" in body
    assert "15 minutes" in body
    assert not body.lstrip().startswith("{")  # a page, not JSON
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_only_for_that_username_from_that_address(client, staff, alice, limit):
    alice.is_staff = True
    alice.save()
    _fail(client, "staff", limit)
    assert _login(client, "staff", "pw-staff").status_code == 429

    elsewhere = _login(client, "staff", "pw-staff", address="198.51.100.20")
    assert elsewhere.status_code == 302
    assert elsewhere.url == reverse("admin:index")
    assert _login(client, "alice", "pw-alice").status_code == 302  # same address, other user


def test_clients_behind_a_trusted_proxy_are_told_apart(client, staff, limit, settings):
    settings.STATEHOUSE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = {"address": "10.0.0.2"}
    _fail(client, "staff", limit, HTTP_X_FORWARDED_FOR="203.0.113.66", **proxy)

    attacker = _login(client, "staff", "pw-staff", HTTP_X_FORWARDED_FOR="203.0.113.66", **proxy)
    admin = _login(client, "staff", "pw-staff", HTTP_X_FORWARDED_FOR="198.51.100.5", **proxy)

    assert attacker.status_code == 429
    assert admin.status_code == 302
    assert AccessAttempt.objects.get().ip_address == "203.0.113.66"


def test_a_successful_login_forgets_the_failures(client, staff, limit):
    _fail(client, "staff", limit - 1)
    assert _login(client, "staff", "pw-staff").status_code == 302

    assert not AccessAttempt.objects.exists()
    assert _fail(client, "staff", limit - 1) == [200] * (limit - 1)


def test_the_lockout_ends_after_the_cool_off(client, staff, limit, settings):
    _fail(client, "staff", limit)
    assert _login(client, "staff", "pw-staff").status_code == 429

    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )

    assert _login(client, "staff", "pw-staff").status_code == 302
