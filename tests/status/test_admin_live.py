"""Live badges in the admin, and links between admin objects and their status pages."""

import re

from django.urls import reverse

from tests.factories import make_session
from tests.status.conftest import new_thread
from threads_app import services


def admin_page(client, staff, url) -> str:
    client.force_login(staff)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def badge(entity, obj) -> str:
    return (
        f'<span class="sh-badge sh-status-{obj.status}" data-live-entity="{entity}" '
        f'data-live-id="{obj.pk}">{obj.status}</span>'
    )


def assert_follows_the_dashboard_feed(html):
    assert 'data-live-feed="/ws/dashboard/"' in html
    assert re.search(r'<script src="[^"]*statehouse/live\.js"', html)
    assert "data-live-indicator" in html


def test_changelists_show_live_badges_and_status_page_links(client, staff, alice):
    thread = new_thread(alice, "pipeline", title="Nightly import")
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    session = thread.session

    cases = [
        ("sessions_app_session", "session", session, reverse("status:session", args=[session.pk])),
        ("threads_app_thread", "thread", thread, reverse("status:thread", args=[thread.pk])),
        ("threads_app_run", "run", run, reverse("status:run", args=[run.pk])),
    ]
    for name, entity, obj, status_url in cases:
        html = admin_page(client, staff, reverse(f"admin:{name}_changelist"))
        assert badge(entity, obj) in html, name
        assert f'href="{status_url}"' in html, name
        assert_follows_the_dashboard_feed(html)


def test_change_pages_show_a_live_badge_and_link_to_the_status_page(client, staff, alice):
    thread = new_thread(alice, "approval")
    run = services.create_run(thread, input={"request": "refund"}, after_seconds=3600)
    session = thread.session

    cases = [
        ("sessions_app_session", "session", session, reverse("status:session", args=[session.pk])),
        ("threads_app_thread", "thread", thread, reverse("status:thread", args=[thread.pk])),
        ("threads_app_run", "run", run, reverse("status:run", args=[run.pk])),
    ]
    for name, entity, obj, status_url in cases:
        html = admin_page(client, staff, reverse(f"admin:{name}_change", args=[obj.pk]))
        assert badge(entity, obj) in html, name
        assert f'<a href="{status_url}" class="sh-status-page-link">Status page</a>' in html
        assert_follows_the_dashboard_feed(html)


def test_status_pages_link_back_to_the_admin_for_staff_only(client, staff, alice):
    session = make_session(alice)
    thread = services.create_thread(session, services.resolve_workflow("pipeline"))
    run = services.create_run(thread, input={"steps": 1}, after_seconds=3600)
    thread_admin = reverse("admin:threads_app_thread_change", args=[thread.pk])
    run_admin = reverse("admin:threads_app_run_change", args=[run.pk])
    session_admin = reverse("admin:sessions_app_session_change", args=[session.pk])

    html = admin_page(client, staff, reverse("status:thread", args=[thread.pk]))
    assert thread_admin in html and run_admin in html
    assert session_admin in admin_page(client, staff, reverse("status:session", args=[session.pk]))

    client.force_login(alice)
    html = client.get(reverse("status:thread", args=[thread.pk])).content.decode()
    assert thread_admin not in html and run_admin not in html


def test_the_workflow_admin_is_unchanged_by_the_live_templates(client, staff):
    workflow = services.resolve_workflow("chat")
    html = admin_page(
        client, staff, reverse("admin:threads_app_workflow_change", args=[workflow.pk])
    )
    assert "sh-status-page-link" not in html
    assert "sh-badge" not in html


def test_the_admin_view_site_link_leads_to_the_status_pages(client, staff):
    html = admin_page(client, staff, reverse("admin:index"))
    assert f'<a href="{reverse("status:dashboard")}">View site</a>' in html
