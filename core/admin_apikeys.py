"""API keys in the admin: created here with the secret shown once, revoked, never edited."""

from django import forms
from django.contrib import admin, messages

from core.apikeys import create_api_key, revoke
from core.models import ApiKey


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["owner", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "owner", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at", "created_at")
    search_fields = ("prefix", "name", "owner__username")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    actions = ("revoke_keys",)
    form = ApiKeyForm

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("owner", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request, obj, form, change):
        if change:
            return
        key, secret = create_api_key(form.cleaned_data["owner"], form.cleaned_data["name"])
        obj.pk = key.pk
        obj.prefix = key.prefix
        self.message_user(
            request,
            f"API key created. Copy it now, it is not shown again: {secret}",
            messages.WARNING,
        )

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description="Revoke the selected keys", permissions=["delete"])
    def revoke_keys(self, request, queryset):
        for key in queryset:
            revoke(key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
