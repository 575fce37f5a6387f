"""Request middleware of the JSON API."""

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
