"""Request middleware of the JSON API, and what the pages' middleware skip for it."""

from django.contrib.messages.middleware import MessageMiddleware
from django.http import JsonResponse

API_PREFIX = "/api/"


class ApiMethodNotAllowed:
    """A known API path called with a method it does not have answers as every other
    API error does, ``{"detail": ...}`` as JSON with its ``Allow`` header (ninja answers
    it with a plain-text body)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or not request.path.startswith(API_PREFIX):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        answer = JsonResponse({"detail": "Method Not Allowed"}, status=405)
        if response.has_header("Allow"):
            answer["Allow"] = response["Allow"]
        return answer


class PageMessageMiddleware(MessageMiddleware):
    """Django's messages for the pages (the admin, /status/, /usage/), not for the JSON
    API, which never shows one: an API request made no message store (a cookie signer
    and two storages per request), and leaves the messages of a browser that calls it
    for its next page. ``get_messages`` and the template context processor read no
    store as no messages."""

    def process_request(self, request):
        if not request.path.startswith(API_PREFIX):
            super().process_request(request)
