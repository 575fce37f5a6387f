"""Views running graphs through DjangoSaver inside ASGI requests (test URLconf)."""

from django.http import JsonResponse
from django.urls import path

from checkpoints_app.saver import DjangoSaver
from tests.checkpoints import graphs


def _answer(result) -> JsonResponse:
    return JsonResponse({"last": result["messages"][-1].content, "turns": result["turns"]})


async def chat_async(request, thread_id):
    app = graphs.chat_graph().compile(checkpointer=DjangoSaver())
    config = {"configurable": {"thread_id": thread_id}}
    return _answer(await app.ainvoke(graphs.human("from an async view"), config))


def chat_sync(request, thread_id):
    app = graphs.chat_graph().compile(checkpointer=DjangoSaver())
    config = {"configurable": {"thread_id": thread_id}}
    return _answer(app.invoke(graphs.human("from a sync view"), config))


urlpatterns = [
    path("async/<str:thread_id>/", chat_async),
    path("sync/<str:thread_id>/", chat_sync),
]
