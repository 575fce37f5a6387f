from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from api.app import api, unknown_path

admin.site.site_header = "Statehouse"
admin.site.site_title = "Statehouse"
admin.site.index_title = "Agent state"
# The admin's "View site" leads to the live status pages.
admin.site.site_url = "/status/"
# No app list beside every page: the changelists get the width of the screen (the index
# page lists the apps).
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    re_path(r"^api/", unknown_path),  # a JSON 404, not Django's HTML page
    # /status/ (live pages, the Studio), /usage/ (dashboard, CSV), /metrics, /healthz
    path("", include("control_room.urls")),
]

# A form over the request size limit: a 413 page saying so, not a bare 400.
handler400 = "core.admin.bad_request"
