"""The API's request body parser: JSON, refused when nested too deep.

Deeply nested JSON would otherwise fail later, in a recursive walk over it (a
RecursionError, a 500). The parser measures each top-level field without recursion and
refuses the body naming the field; a body too deep even for ``json.loads`` is refused too.
"""

import json

from django.conf import settings
from ninja.parser import Parser

from core.metadata import InvalidJSON, check_depth


class JSONTooDeep(InvalidJSON):
    """The request body nests JSON deeper than STATEHOUSE_MAX_JSON_DEPTH."""


class DepthCheckedParser(Parser):
    def parse_body(self, request):
        try:
            data = json.loads(request.body)
        except RecursionError:
            limit = settings.STATEHOUSE_MAX_JSON_DEPTH
            raise JSONTooDeep(
                f"The request body is nested more than {limit} levels deep "
                f"(STATEHOUSE_MAX_JSON_DEPTH is {limit})"
            ) from None
        try:
            if isinstance(data, dict):
                for key, value in data.items():
                    check_depth(value, str(key)[:80])
            else:
                check_depth(data, "The request body")
        except InvalidJSON as exc:
            raise JSONTooDeep(str(exc)) from None
        return data
