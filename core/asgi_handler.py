"""A speed-up that reaches into Django's internals: the ASGI handler with the sync
middleware chain.

Why: Django's stock ASGI handler builds an async middleware chain, in which every
built-in (``MiddlewareMixin``) middleware hops to the sync thread and back for its
request half and its response half, and WhiteNoise (sync only) switches modes once
more: some fifteen thread hops for one request, 40% of the CPU of a small API call.
:class:`SyncChainASGIHandler` builds the sync chain, as under WSGI, and runs it and the
view in one hop to the request's sync thread. Async views (the API's wait, join and
stream endpoints) are still awaited on the server's event loop (Django's sync chain
calls them through ``async_to_sync``, which runs them on the loop the hop came from),
and streaming bodies are sent by the ASGI handler as before. ``bench/api.py`` measures
it: its lines "api floor" (an unknown page: middleware and URL resolver only), "api
cheapest route" and "api CPU per state read" (run it before and after touching this
module).

What it relies on (pinned by ``tests/core/test_asgi_handler.py``, which fails when a
Django upgrade changes them; checked on Django 5.2): ``ASGIHandler.__init__`` builds the
chain by calling ``load_middleware(is_async=True)`` once; ``BaseHandler.load_middleware``
with ``is_async=False`` builds a sync ``_middleware_chain`` that calls async views through
``async_to_sync``; ``BaseHandler.get_response(request)`` runs that chain;
``ASGIHandler.run_get_response`` awaits ``get_response_async(request)`` inside the
request's ``ThreadSensitiveContext`` (so ``thread_sensitive`` hops of one request share
one thread).
"""

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware chain and the view in one hop to the
    sync thread per request."""

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)  # the sync chain, built once

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
